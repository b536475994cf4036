package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
)

var update = flag.Bool("update", false, "regenerate prometheusrule.yaml from rules.yaml")

const (
	rulesFile     = "rules.yaml"
	crFile        = "prometheusrule.yaml"
	dashboardFile = "grafana-dashboard.json"
	runbookFile   = "RUNBOOK.md"
)

// ruleTestFiles are the promtool unit tests of rules.yaml.
var ruleTestFiles = []string{"rules_test.yaml", "rotation_age_test.yaml", "expiry_test.yaml", "key_maintenance_test.yaml"}

// keyMaintenanceGroup holds the rules on kube-state-metrics series about the
// CronJob in manifests/key-maintenance; every other group is on the agent's
// own metrics.
const (
	keyMaintenanceGroup   = "credlet-key-maintenance"
	keyMaintenanceCronJob = "credlet-key-maintenance"
	keyMaintenanceDir     = "../key-maintenance"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := testenv.RequireBinary(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, "check", "rules", "--lint-fatal", rulesFile)
}

// TestPromtoolTestRules proves each alert fires when it should (rotation
// failure within 2 minutes of the first failure, ...) and not on healthy
// series.
func TestPromtoolTestRules(t *testing.T) {
	promtool(t, append([]string{"test", "rules"}, ruleTestFiles...)...)
}

// TestDashboardQueriesParse runs every dashboard query through promtool as
// a recording rule, so a PromQL typo in a panel fails here.
func TestDashboardQueriesParse(t *testing.T) {
	var groups ruleGroups
	for i, q := range dashboardQueries(t) {
		expr := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$pod", ".*").Replace(q.expr)
		rec := fmt.Sprintf("credlet:dashboard:query%d", i)
		groups.Groups = append(groups.Groups, ruleGroup{Name: q.where, Rules: []rule{{Record: rec, Expr: expr}}})
	}
	b, err := yaml.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", "--lint-fatal", path)
}

// TestPrometheusRuleGenerated: prometheusrule.yaml is rules.yaml wrapped in
// a PrometheusRule, byte for byte (-update rewrites it), and means the same.
func TestPrometheusRuleGenerated(t *testing.T) {
	rules := read(t, rulesFile)
	want := prometheusRule(t, rules)
	if *update {
		if err := os.WriteFile(crFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := read(t, crFile)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not generated from %s: run `go test ./manifests/monitoring -run TestPrometheusRuleGenerated -update`", crFile, rulesFile)
	}

	var cr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(got, &cr); err != nil {
		t.Fatalf("%s: %v", crFile, err)
	}
	if cr.APIVersion != "monitoring.coreos.com/v1" || cr.Kind != "PrometheusRule" || cr.Metadata.Name == "" {
		t.Fatalf("%s: apiVersion %q kind %q name %q; want a named monitoring.coreos.com/v1 PrometheusRule", crFile, cr.APIVersion, cr.Kind, cr.Metadata.Name)
	}
	var bare any
	if err := yaml.Unmarshal(rules, &bare); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cr.Spec, bare) {
		t.Fatalf("%s spec differs from %s", crFile, rulesFile)
	}
}

// prometheusRule wraps rules.yaml's groups (from its "groups:" line on,
// comments included) in the PrometheusRule header.
func prometheusRule(t *testing.T, rules []byte) []byte {
	t.Helper()
	i := bytes.Index(rules, []byte("\ngroups:\n"))
	if i < 0 {
		t.Fatalf("%s has no top-level groups: line", rulesFile)
	}
	var b bytes.Buffer
	b.WriteString(`# Generated from rules.yaml by ` + "`go test ./manifests/monitoring -update`" + `;
# edit rules.yaml (and its tests), not this file. Runbooks: RUNBOOK.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: credlet-agent
  labels:
    app.kubernetes.io/name: credlet
    app.kubernetes.io/component: agent
    # Add the labels your Prometheus' ruleSelector matches
    # (kube-prometheus-stack: release: <helm release name>).
spec:
`)
	for _, ln := range strings.SplitAfter(string(rules[i+1:]), "\n") {
		if strings.TrimSpace(ln) != "" {
			b.WriteString("  ")
		}
		b.WriteString(ln)
	}
	return b.Bytes()
}

type ruleGroups struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Group       string            `json:"-"`
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var g ruleGroups
	if err := yaml.UnmarshalStrict(read(t, rulesFile), &g); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			r.Group = grp.Name
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

// TestAlertsComplete: each alert the issue asks for exists, has a severity
// and a runbook link to a section of RUNBOOK.md, and is exercised by a
// promtool test.
func TestAlertsComplete(t *testing.T) {
	rules := loadRules(t)
	runbook := string(read(t, runbookFile))
	var tests strings.Builder
	for _, f := range ruleTestFiles {
		tests.Write(read(t, f))
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q; want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		anchor := strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], "/manifests/monitoring/RUNBOOK.md#"+anchor) {
			t.Errorf("%s: runbook_url %q does not point at RUNBOOK.md#%s", r.Alert, r.Annotations["runbook_url"], anchor)
		}
		if !strings.Contains(runbook, "\n## "+r.Alert+"\n") {
			t.Errorf("%s: RUNBOOK.md has no section \"## %s\"", r.Alert, r.Alert)
		}
		if !strings.Contains(tests.String(), "alertname: "+r.Alert+"\n") {
			t.Errorf("%s: no promtool test in %v", r.Alert, ruleTestFiles)
		}
	}
	for _, want := range []string{
		"CredletRotationFailing", "CredletTokenRenewalFailing", "CredletCredentialStale",
		"CredletCredentialRotationOverdue", "CredletAgentNotReady", "CredletSocketDenied",
		"CredletCredentialExpiringSoon", "CredletCredentialExpired",
		"CredletKeyMaintenanceFailed", "CredletKeyMaintenanceNotRun",
	} {
		if !seen[want] {
			t.Errorf("alert %s missing from %s", want, rulesFile)
		}
	}
}

var metricName = regexp.MustCompile(`\bcredlet_[a-z0-9_]+`)

// TestMetricNamesExist: every credlet_* name used by a rule or a panel is a
// metric the agent registers, so a rename in internal/metrics (or a typo
// here) fails a test instead of silencing an alert.
func TestMetricNamesExist(t *testing.T) {
	known := agentMetrics(t)
	check := func(where, expr string) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: no credlet metric in %q", where, expr)
		}
		for _, n := range names {
			if !known[n] {
				t.Errorf("%s: %s is not a metric of internal/metrics", where, n)
			}
		}
	}
	for _, r := range loadRules(t) {
		if r.Group == keyMaintenanceGroup {
			continue // TestKeyMaintenanceRulesMatchCronJob
		}
		check(rulesFile+" "+r.Alert+r.Record, r.Expr)
	}
	shown := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		check(q.where, q.expr)
		for _, n := range metricName.FindAllString(q.expr, -1) {
			shown[strings.TrimSuffix(n, "_bucket")] = true
		}
	}
	for n := range known {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, "credlet_") && known[base] && !shown[base] {
			t.Errorf("%s shows no panel for %s", dashboardFile, base)
		}
	}
}

// agentMetrics returns the series names metrics.New registers, histogram
// series included.
func agentMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	m.InitCredential("x")
	m.LastRotation.WithLabelValues("x")
	m.TokenRenewals.WithLabelValues("x")
	m.Logins.WithLabelValues("x", "y")
	m.VaultRequestDuration.WithLabelValues("x")
	m.SocketRequests.WithLabelValues("200")
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range fams {
		known[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[f.GetName()+s] = true
			}
		}
	}
	for _, n := range []string{"credlet_ready", "credlet_rotations_total", "credlet_refresh_interval_seconds"} {
		if !known[n] {
			t.Fatalf("metrics.New() does not register %s (have %d names)", n, len(known))
		}
	}
	return known
}

type query struct{ where, expr string }

// dashboardQueries checks the dashboard's shape and returns its queries.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(read(t, dashboardFile)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Fatalf("%s: no uid or title", dashboardFile)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, v := range []string{"datasource", "namespace", "pod"} {
		if !slices.Contains(vars, v) {
			t.Errorf("%s: no $%s variable", dashboardFile, v)
		}
	}
	var out []query
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		where := fmt.Sprintf("%s panel %q", dashboardFile, p.Title)
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %q; want ${datasource}", where, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `namespace=~"$namespace",pod=~"$pod"`) {
				t.Errorf("%s query %s: not filtered by $namespace and $pod: %s", where, tg.RefID, tg.Expr)
			}
			out = append(out, query{where: where + " " + tg.RefID, expr: tg.Expr})
		}
	}
	return out
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var kubeStateMetric = regexp.MustCompile(`\bkube_[a-z_]+`)

// TestKeyMaintenanceRulesMatchCronJob: the key-maintenance alerts read only
// kube-state-metrics' Job and CronJob series, and name the CronJob that
// manifests/key-maintenance defines (and its Jobs, named after it), so a
// rename on either side fails here instead of silencing the page.
func TestKeyMaintenanceRulesMatchCronJob(t *testing.T) {
	var cj struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(read(t, filepath.Join(keyMaintenanceDir, "cronjob.yaml")), &cj); err != nil {
		t.Fatal(err)
	}
	if cj.Kind != "CronJob" || cj.Metadata.Name != keyMaintenanceCronJob {
		t.Fatalf("cronjob.yaml: %s %q; want CronJob %q", cj.Kind, cj.Metadata.Name, keyMaintenanceCronJob)
	}
	known := map[string]bool{
		"kube_job_status_start_time": true, "kube_job_status_failed": true,
		"kube_cronjob_status_last_successful_time": true,
	}
	n := 0
	for _, r := range loadRules(t) {
		if r.Group != keyMaintenanceGroup {
			continue
		}
		n++
		if m := metricName.FindAllString(r.Expr, -1); len(m) > 0 {
			t.Errorf("%s: uses agent metrics %v; the agent does not run in the CronJob", r.Alert, m)
		}
		names := kubeStateMetric.FindAllString(r.Expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: no kube-state-metrics series in %q", r.Alert, r.Expr)
		}
		for _, m := range names {
			if !known[m] {
				t.Errorf("%s: %s is not a kube-state-metrics Job/CronJob series this test knows", r.Alert, m)
			}
		}
		for _, sel := range regexp.MustCompile(`(job_name=~|cronjob=)"([^"]*)"`).FindAllStringSubmatch(r.Expr, -1) {
			want := keyMaintenanceCronJob
			if sel[1] == "job_name=~" {
				want += "-[0-9]+"
			}
			if sel[2] != want {
				t.Errorf("%s: selector %s%q; want %q (the CronJob in %s)", r.Alert, sel[1], sel[2], want, keyMaintenanceDir)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s has no group %s", rulesFile, keyMaintenanceGroup)
	}
}
