package deploy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/loopcast/loopcast/internal/testutil"
)

// repoRoot is the build context: the repository, one level up.
const repoRoot = ".."

const (
	runtimeBase = "gcr.io/distroless/static-debian12:nonroot"
	builderBase = "golang:1.26"
)

// dockerfile is what the tests need from ../Dockerfile, parsed with
// BuildKit's own parser and instruction decoder.
type dockerfile struct {
	stages []instructions.Stage
	expose []string // final stage, in order
	uid    int64    // final stage USER
	build  *instructions.RunCommand
	lints  []string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	var df dockerfile
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, _ []parser.Range) {
		df.lints = append(df.lints, rule+": "+msg)
	}})
	df.stages, _, err = instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(df.stages) == 0 {
		t.Fatal("Dockerfile has no stages")
	}
	df.uid = -1
	for _, c := range df.stages[len(df.stages)-1].Commands {
		switch c := c.(type) {
		case *instructions.ExposeCommand:
			df.expose = append(df.expose, c.Ports...)
		case *instructions.UserCommand:
			user, _, _ := strings.Cut(c.User, ":")
			if df.uid, err = strconv.ParseInt(user, 10, 64); err != nil {
				t.Fatalf("USER %q: want a numeric uid, so the kubelet can check runAsNonRoot", c.User)
			}
		}
	}
	for _, c := range df.stages[0].Commands {
		if r, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
			df.build = r
		}
	}
	return df
}

// TestDockerfile: a multi-stage build of a static binary onto distroless
// static as a non-root user, with nothing that needs a shell at run time.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.lints) > 0 {
		t.Errorf("BuildKit lint warnings: %v", df.lints)
	}
	if len(df.stages) != 2 {
		t.Fatalf("%d stages, want build + runtime", len(df.stages))
	}
	build, run := df.stages[0], df.stages[1]
	if build.BaseName != builderBase || build.Name != "build" {
		t.Errorf("first stage FROM %s AS %s, want %s AS build", build.BaseName, build.Name, builderBase)
	}
	if run.BaseName != runtimeBase {
		t.Errorf("final stage FROM %s, want %s", run.BaseName, runtimeBase)
	}
	if df.uid <= 0 {
		t.Errorf("final USER uid %d: want a non-root numeric user", df.uid)
	}
	if !slices.Equal(df.expose, []string{"8080", "9090"}) {
		t.Errorf("EXPOSE %v, want 8080 9090", df.expose)
	}
	var copied, entry bool
	for _, c := range run.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			t.Errorf("final stage RUN %v: the runtime image has no shell", c.CmdLine)
		case *instructions.CopyCommand:
			copied = copied || c.From == build.Name
		case *instructions.EntrypointCommand:
			entry = true
			if c.PrependShell {
				t.Errorf("ENTRYPOINT %v: use the exec form, there is no shell", c.CmdLine)
			}
		case *instructions.CmdCommand:
			if c.PrependShell {
				t.Errorf("CMD %v: use the exec form, there is no shell", c.CmdLine)
			}
		}
	}
	if !copied || !entry {
		t.Errorf("final stage: want COPY --from=%s and an ENTRYPOINT", build.Name)
	}
	if df.build == nil {
		t.Fatal("build stage has no RUN ... go build")
	}
	line := strings.Join(df.build.CmdLine, " ")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/loopcast"} {
		if !strings.Contains(line, want) {
			t.Errorf("go build line %q lacks %s", line, want)
		}
	}
}

// goTimeout bounds each go command these tests run (go build, go list).
// On a cold build cache (CGO_ENABLED=0 and -trimpath share nothing with
// the test binaries' builds: the standard library and every dependency
// compile again) and maybe a cold module cache (go list -m all reads
// every module's go.mod), on two cores shared with the rest of `go test
// ./...`, the build took more than 4 minutes; the limit is only a guard
// against a command that never ends. The test binary's own -timeout (10
// minutes by default) caps it (testutil.Command).
const goTimeout = 15 * time.Minute

// runGo runs the go command with args in the repository root, env added
// to the environment, and returns its standard output and error; a
// command killed at its deadline says so.
func runGo(t *testing.T, env []string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := testutil.Command(t, goTimeout, "go", args...)
	cmd.Dir = repoRoot
	// As in the image: .dockerignore keeps go.work out, so the root
	// module builds alone.
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	if errors.Is(err, context.DeadlineExceeded) || cmd.ProcessState != nil && !cmd.ProcessState.Exited() {
		err = fmt.Errorf("killed after %s: %w", took, err)
	}
	t.Logf("go %s: %s", strings.Join(args, " "), took)
	return out.Bytes(), errOut.Bytes(), err
}

// TestDockerfileBuildsStaticBinary runs the Dockerfile's `go build` line
// here (same words, output redirected to a temporary directory) and checks the
// result is a static ELF executable: no interpreter, no cgo, -trimpath.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	df := parseDockerfile(t)
	if df.build == nil {
		t.Fatal("no go build line")
	}
	words, err := shell.NewLex(parser.DefaultEscapeToken).ProcessWords(strings.Join(df.build.CmdLine, " "), shell.EnvsFromSlice(nil))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("RUN line %v: want [VAR=value ...] go build ...", df.build.CmdLine)
	}
	out := filepath.Join(t.TempDir(), "loopcast")
	i := slices.Index(words, "-o")
	if i < 0 || i+1 >= len(words) {
		t.Fatalf("go build %v: want -o PATH", words)
	}
	words[i+1] = out

	if stdout, stderr, err := runGo(t, env, words[1:]...); err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(append(env, words...), " "), err, stdout, stderr)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		t.Errorf("ELF type %s, want ET_EXEC (static, not PIE)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("ELF has an interpreter (PT_INTERP): not static")
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Error("ELF has a dynamic section: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("links %v", libs)
	}
	bi, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	if file, err := exec.LookPath("file"); err == nil {
		b, err := exec.Command(file, out).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "statically linked") {
			t.Errorf("file: %s", b)
		}
	}
}

// TestDockerignore: the build context holds what `go build ./cmd/loopcast`
// reads and leaves out the repository's history, the peers' node_modules
// and the rest.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(p string) bool {
		ok, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// Every Go file of the main module that the binary is built from.
	b, stderr, err := runGo(t, nil, "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}\n{{end}}{{end}}{{end}}", "./cmd/loopcast")
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	for _, p := range strings.Fields(string(b)) {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, filepath.ToSlash(rel))
	}
	if len(need) < 5 {
		t.Fatalf("go list found only %v", need)
	}
	for _, p := range need {
		if excluded(p) {
			t.Errorf(".dockerignore excludes %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git/config", "bench/peers/bun/node_modules/x/index.js", "bench/peers/go.mod", "web/node_modules/a.js", "deploy/base/deployment.yaml"} {
		if !excluded(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
}

// TestDockerfileFetchesOnlyWhatTheBinaryNeeds: no `go mod download` (it
// would fetch the tests' modules too): go build fetches what the binary
// imports, fewer than go.mod's modules (the root module keeps the
// server's tests' NATS server, gorilla and goleak; deploy's Kubernetes,
// kustomize and BuildKit are in deploy's own module).
func TestDockerfileFetchesOnlyWhatTheBinaryNeeds(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "RUN") && strings.Contains(line, "go mod download") {
			t.Error("the Dockerfile runs go mod download: every module of go.mod, test-only ones included")
		}
	}
	list := func(args ...string) []byte {
		out, stderr, err := runGo(t, nil, args...)
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	deps := list("list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./cmd/loopcast")
	all := list("list", "-m", "all")
	need := map[string]bool{}
	for _, m := range strings.Fields(string(deps)) {
		need[m] = true
	}
	total := len(strings.Split(strings.TrimSpace(string(all)), "\n"))
	t.Logf("the binary imports %d of go.mod's %d modules", len(need), total)
	if len(need) >= total {
		t.Errorf("the binary needs %d of %d modules: the saving this test guards is gone", len(need), total)
	}
}

// TestDockerfileClassicBuilder: the file keeps to what Docker's classic
// builder accepts, which is what ACR Tasks (`az acr build`) runs: no
// parser directives (# syntax selects a BuildKit frontend), no FROM
// --platform (ACR's dependency scanner rejects FROM
// --platform=$BUILDPLATFORM, Azure/acr#697), no RUN --mount, --network
// or --security, no heredocs, and COPY with only --from and --chown.
func TestDockerfileClassicBuilder(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if first := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]); strings.HasPrefix(strings.ReplaceAll(first, " ", ""), "#syntax=") {
		t.Errorf("parser directive %q: ACR Tasks' classic builder has no frontends", first)
	}
	allowed := map[string][]string{"copy": {"from", "chown"}}
	for _, n := range res.AST.Children {
		if len(n.Heredocs) > 0 {
			t.Errorf("line %d: heredoc: BuildKit only", n.StartLine)
		}
		for _, f := range n.Flags {
			name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			if !slices.Contains(allowed[strings.ToLower(n.Value)], name) {
				t.Errorf("line %d: %s %s: not for the classic builder (ACR Tasks)", n.StartLine, strings.ToUpper(n.Value), f)
			}
		}
	}
}
