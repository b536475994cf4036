package annotation

import "strings"

// Markdown renders the schema as the README's annotation table.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| annotation | default | allowed | meaning |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, f := range schema {
		def := f.DefaultDoc
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		b.WriteString("| `" + f.Key + "` | " + cell(def) + " | " + cell(f.Allowed) + " | " + cell(f.Doc) + " |\n")
	}
	b.WriteString("\nPods reach the injector only with the label `" + InjectLabel + ": \"true\"`. " +
		"Any other `" + Prefix + "*` key, or a value outside what is allowed, denies the pod with a message naming the key.\n")
	return b.String()
}

// cell escapes what would break a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
