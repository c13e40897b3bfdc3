package main

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
)

// devAddr is where --dev listens when no address is given: loopback only,
// since its page hands a publishing token to whoever loads it.
const devAddr = "127.0.0.1:8080"

// finishServing completes the listener's part of the configuration once
// the flags are parsed: the CORS list, TLS both-or-neither, and what --dev
// changes when nothing was said (loopback, no drain delay). It returns the
// problems found.
func (c *Config) finishServing(cors string, getenv func(string) string, fs *flag.FlagSet) []string {
	var problems []string
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Dev {
		if !set["addr"] && getenv("REALTIME_ADDR") == "" {
			c.Addr = devAddr
		}
		if !set["drain-delay"] && getenv("REALTIME_DRAIN_DELAY") == "" {
			c.DrainDelay = 0
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		problems = append(problems, "REALTIME_TLS_CERT and REALTIME_TLS_KEY go together")
	}
	if c.DrainDelay < 0 {
		problems = append(problems, "drain delay must not be negative")
	}
	origins, err := parseOrigins(cors)
	if err != nil {
		problems = append(problems, "REALTIME_CORS_ORIGINS: "+err.Error())
	}
	c.CORSOrigins = origins
	return problems
}

// parseOrigins reads a comma-separated list of origins: each exactly
// scheme://host[:port] as a browser sends it in Origin, or "*" alone.
func parseOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an origin (scheme://host[:port], no path)", o)
		}
		out = append(out, strings.ToLower(o))
	}
	if len(out) > 1 {
		for _, o := range out {
			if o == "*" {
				return nil, fmt.Errorf(`"*" stands alone`)
			}
		}
	}
	return out, nil
}
