package annotation_test

import (
	"fmt"

	"github.com/credlet/credlet/internal/annotation"
)

func ExampleParse() {
	spec, err := annotation.Parse(map[string]string{
		"credlet.io/role":                       "acme-bot",
		"credlet.io/credential.exa":             "secret/partners/acme/exa",
		"credlet.io/credential.exa.transit-key": "acme",
		"credlet.io/delivery":                   "socket",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(spec.Auth, spec.Role, spec.Delivery)
	for _, c := range spec.Credentials {
		fmt.Println("--credential=" + c.String())
	}

	_, err = annotation.Parse(map[string]string{
		"credlet.io/role":           "acme-bot",
		"credlet.io/credential.exa": "secret/partners/acme/exa",
		"credlet.io/sidecar":        "sidecar",
	})
	fmt.Println(err)
	// Output:
	// kubernetes acme-bot socket
	// --credential=exa=secret/partners/acme/exa;transit=acme
	// annotation credlet.io/sidecar="sidecar" (allowed: native, classic)
}
