// Package realtime holds the API's contract, which only the module root can
// embed: the OpenAPI document, and the event schemas read from it
// (schema.go) that publish and the Event Bus bridge validate against. The
// rest of the code lives in cmd/, handlers/, stream/, poll/ and middleware/.
package realtime

import _ "embed"

// OpenAPI is openapi.yaml: served at /openapi.yaml, the source of the event
// payload schemas that publish validates against, and what the router is
// checked against in tests.
//
//go:embed openapi.yaml
var OpenAPI []byte
