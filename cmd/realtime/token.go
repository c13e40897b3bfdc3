package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	appmw "github.com/realtime-dev/realtime/middleware"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// minSecret is the shortest HS256 key serve and token accept.
const minSecret = 32

// mintToken mints a token with REALTIME_JWT_SECRET (and the configured issuer
// and audience) and prints it.
func mintToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		sub        string
		workspaces stringList
		scopes     stringList
		ttl        time.Duration
	)
	fs := flag.NewFlagSet("realtime token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&sub, "sub", "", "user id (required)")
	fs.Var(&workspaces, "workspace", `workspace the token may read; repeat or comma-separate; "*" for all (required)`)
	fs.Var(&scopes, "scope", "scope to grant, e.g. events:publish; repeatable")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("REALTIME_JWT_SECRET")
	var problems []string
	switch {
	case secret == "":
		problems = append(problems, "REALTIME_JWT_SECRET is not set (this command signs HS256 tokens with it; tokens for a JWKS or PEM keys come from their identity provider)")
	case len(secret) < minSecret:
		// serve refuses such a key: a token signed with it would be refused too.
		problems = append(problems, fmt.Sprintf("REALTIME_JWT_SECRET is %d bytes; serve accepts only keys of at least %d bytes", len(secret), minSecret))
	}
	if sub == "" {
		problems = append(problems, "--sub is required")
	}
	if len(workspaces) == 0 {
		problems = append(problems, "--workspace is required")
	}
	if ttl <= 0 {
		problems = append(problems, "--ttl must be positive")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	tok, err := appmw.IssueToken([]byte(secret), appmw.TokenSpec{
		Subject: sub, Workspaces: workspaces, Scopes: scopes, TTL: ttl,
		Issuer: getenv("REALTIME_JWT_ISSUER"), Audience: getenv("REALTIME_JWT_AUDIENCE"),
	}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
