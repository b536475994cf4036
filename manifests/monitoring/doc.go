// Package monitoring holds credlet-agent's Prometheus alert rules and Grafana
// dashboard as files a platform team applies, and the tests that keep them
// honest: rules.yaml (bare rule groups) is checked and unit-tested with
// promtool (rules_test.yaml, rotation_age_test.yaml), prometheusrule.yaml is
// generated from it (go test -update), and every metric the rules and the
// dashboard name must exist in internal/metrics.
//
// There is no Go code to import here.
package monitoring
