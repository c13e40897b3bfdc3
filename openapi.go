// Package realtime holds what the whole service shares and only the module
// root can embed: the OpenAPI document, the API's contract. The code lives
// in cmd/, handlers/, stream/, poll/ and middleware/.
package realtime

import _ "embed"

// OpenAPI is openapi.yaml: served at /openapi.yaml, the source of the event
// payload schemas that publish validates against, and what the router is
// checked against in tests.
//
//go:embed openapi.yaml
var OpenAPI []byte
