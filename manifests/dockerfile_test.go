package manifests

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Where the image keeps the programs; the injector Deployment and the
// injector's injected agent (args only, so the entrypoint) depend on it.
const (
	agentBinary    = "/credlet-agent"
	injectorBinary = "/credlet-injector"
)

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

type stage struct {
	from, name string
	ins        []instruction
}

// parseDockerfile splits the Dockerfile into stages of instructions,
// joining continuation lines and dropping comments.
func parseDockerfile(t *testing.T) (global []instruction, stages []stage) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var cur strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			global = append(global, in)
			return
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		flush()
	}
	flush()
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a final one", len(stages))
	}
	return global, stages
}

func TestDockerfileFinalStage(t *testing.T) {
	_, stages := parseDockerfile(t)
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want gcr.io/distroless/static… or scratch (no shell)", final.from)
	}
	builders := map[string]bool{}
	for _, s := range stages[:len(stages)-1] {
		builders[s.name] = true
	}
	var user, entrypoint string
	copied := map[string]bool{}
	labels := map[string]bool{}
	for _, in := range final.ins {
		switch in.cmd {
		case "RUN", "SHELL":
			t.Errorf("line %d: %s in the final stage (it has no shell)", in.line, in.cmd)
		case "USER":
			user = in.args
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
				t.Errorf("line %d: %s %s is shell form; the image has no shell (use [\"...\"])", in.line, in.cmd, in.args)
			}
			if in.cmd == "ENTRYPOINT" {
				entrypoint = strings.Join(argv, " ")
			}
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") || !builders[strings.TrimPrefix(f[0], "--from=")] {
				t.Errorf("line %d: COPY %s: want COPY --from=<build stage> SRC DST", in.line, in.args)
				continue
			}
			copied[f[2]] = true
		case "LABEL":
			for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z.]+)=`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = true
			}
		}
	}
	if m := regexp.MustCompile(`^([0-9]+)(:[0-9]+)?$`).FindStringSubmatch(user); m == nil || m[1] == "0" {
		t.Errorf("USER %q: want a numeric non-root uid[:gid] (runAsNonRoot needs it numeric)", user)
	}
	for _, b := range []string{agentBinary, injectorBinary} {
		if !copied[b] {
			t.Errorf("the final stage does not copy %s", b)
		}
	}
	if entrypoint != agentBinary {
		t.Errorf("ENTRYPOINT %q: want [%q]: the injector adds the agent with args only", entrypoint, agentBinary)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no OCI label org.opencontainers.image.%s", l)
		}
	}
}

// buildCommands returns the build stage's go build commands with ARG/ENV
// values, and the ENV it sets.
func buildCommands(t *testing.T, args map[string]string) (cmds []string, env []string) {
	t.Helper()
	_, stages := parseDockerfile(t)
	for _, s := range stages[:len(stages)-1] {
		for _, in := range s.ins {
			switch in.cmd {
			case "ENV":
				k, v, _ := strings.Cut(in.args, "=")
				env = append(env, k+"="+v)
			case "RUN":
				if strings.Contains(in.args, "go build") {
					cmds = append(cmds, os.Expand(in.args, func(k string) string { return args[k] }))
				}
			}
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("%d go build commands in the build stage, want 2", len(cmds))
	}
	return cmds, env
}

// TestDockerfileFlagsMatchMakefile: the image is built like `make build`.
func TestDockerfileFlagsMatchMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:=\s*((?:.*\\\n)*.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no LDFLAGS in the Makefile")
	}
	want := strings.Join(strings.Fields(strings.NewReplacer("\\\n", " ", "$(VERSION)", "V", "$(COMMIT)", "C").Replace(string(m[1]))), " ")
	cmds, env := buildCommands(t, map[string]string{"VERSION": "V", "COMMIT": "C"})
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Error("the build stage does not set CGO_ENABLED=0")
	}
	buildLine := regexp.MustCompile(`(?m)^\s*CGO_ENABLED=0 \$\(GO\) build (.*) -o bin/credlet-agent \./agent$`).FindSubmatch(mk)
	for _, c := range cmds {
		if !strings.Contains(c, "-trimpath") {
			t.Errorf("%s: no -trimpath", c)
		}
		lm := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(c)
		if lm == nil || strings.Join(strings.Fields(lm[1]), " ") != want {
			t.Errorf("%s:\n ldflags differ from the Makefile's %q", c, want)
		}
	}
	if buildLine == nil || !strings.Contains(string(buildLine[1]), "-trimpath") {
		t.Error("the Makefile's build target changed shape; update this test and the Dockerfile together")
	}
}

// TestDockerfileBuildsStaticBinaries runs the build stage's own go build
// commands (Docker can't run here) and checks what comes out.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds both binaries")
	}
	out := t.TempDir()
	cmds, env := buildCommands(t, map[string]string{"VERSION": "v9.9.9-test", "COMMIT": "abc1234"})
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "/out/", out+"/")
		cmd := exec.Command("sh", "-c", c)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, b)
		}
	}
	for _, bin := range []struct{ name, flag string }{{agentBinary, "version"}, {injectorBinary, "--version"}} {
		p := filepath.Join(out, strings.TrimPrefix(bin.name, "/"))
		f, err := elf.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", bin.name, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: it is dynamically linked", bin.name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", bin.name, libs)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s keeps its symbol table (-s missing)", bin.name)
		}
		f.Close()
		got, err := exec.Command(p, bin.flag).CombinedOutput()
		if err != nil || !bytes.Contains(got, []byte("v9.9.9-test")) {
			t.Errorf("%s %s = %q (%v): the version was not stamped", bin.name, bin.flag, got, err)
		}
	}
}
