package handlers

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// authorizeWorkspace admits a request only for a well-formed workspace its
// token covers.
func authorizeWorkspace(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws := chi.URLParam(r, "workspaceID")
			if !stream.ValidWorkspace(ws) {
				writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_workspace", "workspace ids are 1-128 characters of [A-Za-z0-9_.:-], starting with a letter or digit"))
				return
			}
			p := appmw.PrincipalFromContext(r.Context())
			if !p.CanRead(ws) {
				writeError(logger, w, r, errorf(http.StatusForbidden, "forbidden", "the token does not cover this workspace"))
				return
			}
			appmw.AddLogAttrs(r.Context(), slog.String("workspace", ws), slog.String("user", p.UserID))
			next.ServeHTTP(w, r)
		})
	}
}

// requireScope admits a request only when its token holds scope.
func requireScope(logger *slog.Logger, scope string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !appmw.PrincipalFromContext(r.Context()).Has(scope) {
				writeError(logger, w, r, errorf(http.StatusForbidden, "forbidden", "the token lacks the %s scope", scope))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
