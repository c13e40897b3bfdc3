package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/realtime-dev/realtime"
)

// The deployment files are checked against the code, since this machine
// cannot run them: every variable they set is one the code reads, the
// probe and health-check paths are routes, the ports agree, and each
// orchestrator's stop grace covers the drain delay plus the shutdown
// timeout.
func TestDeployFilesAgreeWithTheCode(t *testing.T) {
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("../../deploy", p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	varRE := regexp.MustCompile(`REALTIME_[A-Z0-9_]+`)
	known := map[string]bool{}
	for _, src := range []string{"config.go", "client.go", "token.go", "benchcmd.go"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range regexp.MustCompile(`"(REALTIME_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(b), -1) {
			known[v[1]] = true
		}
	}
	files, err := filepath.Glob("../../deploy/*")
	if err != nil {
		t.Fatal(err)
	}
	k8s, _ := filepath.Glob("../../deploy/k8s/*")
	for _, f := range append(files, k8s...) {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			continue
		}
		rel, _ := filepath.Rel("../../deploy", f)
		for _, v := range varRE.FindAllString(read(rel), -1) {
			if !known[v] {
				t.Errorf("%s sets %s, which the code does not read", rel, v)
			}
		}
	}

	var spec struct {
		Paths map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(realtime.OpenAPI, &spec); err != nil {
		t.Fatal(err)
	}
	route := func(what, p string) {
		if _, ok := spec.Paths[p]; !ok {
			t.Errorf("%s uses %s, which is not a route", what, p)
		}
	}
	portOf := func(addr string) int {
		_, p, _ := strings.Cut(addr, ":")
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("address %q has no port", addr)
		}
		return n
	}
	dur := func(what, s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return d
	}
	def := defaultConfig()

	// Kubernetes.
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	var dep struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Grace      int `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						Env []struct {
							Name  string `yaml:"name"`
							Value string `yaml:"value"`
						} `yaml:"env"`
						Readiness probe `yaml:"readinessProbe"`
						Liveness  probe `yaml:"livenessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(read("k8s/deployment.yaml")), &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 || len(pod.Containers[0].Ports) != 1 {
		t.Fatalf("deployment: want one container with one port: %+v", pod)
	}
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	addr, drain, shutdown := def.Addr, def.DrainDelay, def.ShutdownTimeout
	if v := env["REALTIME_ADDR"]; v != "" {
		addr = v
	}
	if v := env["REALTIME_DRAIN_DELAY"]; v != "" {
		drain = dur("deployment", v)
	}
	if v := env["REALTIME_SHUTDOWN_TIMEOUT"]; v != "" {
		shutdown = dur("deployment", v)
	}
	if c.Ports[0].ContainerPort != portOf(addr) {
		t.Errorf("deployment: containerPort %d, but the node listens on %s", c.Ports[0].ContainerPort, addr)
	}
	if c.Readiness.HTTPGet.Path != "/readyz" || c.Liveness.HTTPGet.Path != "/healthz" {
		t.Errorf("deployment probes: readiness %s, liveness %s; want /readyz and /healthz", c.Readiness.HTTPGet.Path, c.Liveness.HTTPGet.Path)
	}
	for _, p := range []probe{c.Readiness, c.Liveness} {
		route("a probe", p.HTTPGet.Path)
		if p.HTTPGet.Port != c.Ports[0].Name {
			t.Errorf("probe port %q is not the container's port %q", p.HTTPGet.Port, c.Ports[0].Name)
		}
	}
	if time.Duration(pod.Grace)*time.Second < drain+shutdown+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d does not cover the drain delay %v plus the shutdown timeout %v", pod.Grace, drain, shutdown)
	}
	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(read("k8s/service.yaml")), &svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != c.Ports[0].Name {
		t.Errorf("service targets %+v; want the container's port %q", svc.Spec.Ports, c.Ports[0].Name)
	}
	var pdb struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(read("k8s/pdb.yaml")), &pdb); err != nil {
		t.Fatal(err)
	}
	labels := dep.Spec.Template.Metadata.Labels
	for what, sel := range map[string]map[string]string{"service": svc.Spec.Selector, "pdb": pdb.Spec.Selector.MatchLabels, "deployment": dep.Spec.Selector.MatchLabels} {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry", what, k, v)
			}
		}
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal([]byte(read("k8s/configmap.yaml")), &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["REALTIME_REDIS_URL"] == "" {
		t.Error("the configmap sets no REALTIME_REDIS_URL")
	}

	// Compose, and the proxies in front of its nodes.
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			StopGrace   string            `yaml:"stop_grace_period"`
			Expose      []string          `yaml:"expose"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read("compose.yaml")), &compose); err != nil {
		t.Fatal(err)
	}
	caddy, nginx := read("Caddyfile"), read("nginx.conf")
	nodes := 0
	for name, s := range compose.Services {
		if !strings.HasPrefix(name, "realtime-") {
			continue
		}
		nodes++
		port := strconv.Itoa(portOf(s.Environment["REALTIME_ADDR"]))
		if !strings.HasPrefix(s.Environment["REALTIME_REDIS_URL"], "redis://redis:") {
			t.Errorf("compose %s: REALTIME_REDIS_URL %q is not the redis service", name, s.Environment["REALTIME_REDIS_URL"])
		}
		for what, conf := range map[string]string{"Caddyfile": caddy, "nginx.conf": nginx} {
			if !strings.Contains(conf, name+":"+port) {
				t.Errorf("%s does not proxy to %s:%s", what, name, port)
			}
		}
		if len(s.Expose) != 1 || s.Expose[0] != port {
			t.Errorf("compose %s exposes %v; it listens on %s", name, s.Expose, port)
		}
		if dur(name, s.StopGrace) < dur(name, s.Environment["REALTIME_DRAIN_DELAY"])+dur(name, s.Environment["REALTIME_SHUTDOWN_TIMEOUT"])+5*time.Second {
			t.Errorf("compose %s: stop_grace_period %s does not cover the drain and the shutdown", name, s.StopGrace)
		}
	}
	if nodes != 2 || compose.Services["redis"].Environment == nil && !strings.Contains(read("compose.yaml"), "redis-server") {
		t.Errorf("compose: %d nodes; want two and a redis", nodes)
	}
	for _, m := range regexp.MustCompile(`health_uri (\S+)`).FindAllStringSubmatch(caddy, -1) {
		route("the Caddyfile's health check", m[1])
	}
	if !strings.Contains(nginx, "proxy_buffering off") || !strings.Contains(nginx, "proxy_read_timeout") {
		t.Error("nginx.conf would buffer or time out streams")
	}

	// The image and the unit.
	docker := read("Dockerfile")
	for _, want := range []string{"CGO_ENABLED=0", "USER nonroot", "-X main.version=", "EXPOSE " + strconv.Itoa(portOf(def.Addr)), `ENTRYPOINT ["/usr/local/bin/realtime", "serve"]`} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	_ = version // the variable -X main.version sets
	unit := read("realtime.service")
	stop := regexp.MustCompile(`TimeoutStopSec=(\d+)`).FindStringSubmatch(unit)
	if stop == nil {
		t.Fatal("realtime.service sets no TimeoutStopSec")
	}
	uDrain := dur("unit", regexp.MustCompile(`REALTIME_DRAIN_DELAY=(\S+)`).FindStringSubmatch(unit)[1])
	uShut := dur("unit", regexp.MustCompile(`REALTIME_SHUTDOWN_TIMEOUT=(\S+)`).FindStringSubmatch(unit)[1])
	if s, _ := strconv.Atoi(stop[1]); time.Duration(s)*time.Second < uDrain+uShut+5*time.Second {
		t.Errorf("TimeoutStopSec=%s does not cover the drain and the shutdown", stop[1])
	}
}
