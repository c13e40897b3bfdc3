package handlers

import "testing"

// No two rate buckets share a name: the review's collision (publishing to
// workspace "presence:acme:carol" spent carol's presence rate in acme), and
// user ids that hold the separator.
func TestRateBucketsAreDistinct(t *testing.T) {
	names := map[string]string{}
	add := func(what, name string) {
		if prev, ok := names[name]; ok {
			t.Fatalf("%s and %s share the bucket %q", prev, what, name)
		}
		names[name] = what
	}
	for _, ws := range []string{"acme", "presence:acme:carol", "presence", "acme:carol", "a"} {
		add("publish "+ws, publishBucket(ws))
		for _, user := range []string{"carol", "acme:carol", "x/carol", "/", ""} {
			add("presence "+ws+" "+user, presenceBucket(ws, user))
		}
		add("tickets "+ws, ticketBucket(ws))
	}
}
