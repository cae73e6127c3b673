//! Which endpoint a request names, and what it answers: one table, the
//! only way into a handler, so the OpenAPI test can hold
//! `docs/admin-api.yaml` to it.

use http::Method;

use crate::settings::AdminAuth;

/// One admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Dashboard,
    DashboardScript,
    DashboardStyle,
    OpenApi,
    Health,
    Metrics,
    Stats,
    Explain,
    Purge,
    Events,
    Reload,
}

/// Every path the admin API answers, and its endpoint. The admin handler
/// finds endpoints here and nowhere else, so this table is the whole API; the
/// OpenAPI test holds `docs/admin-api.yaml` to it through [`routes`].
const ROUTES: [(&str, Route); 12] = [
    ("/_folio", Route::Dashboard),
    ("/_folio/", Route::Dashboard),
    ("/_folio/dashboard.js", Route::DashboardScript),
    ("/_folio/dashboard.css", Route::DashboardStyle),
    ("/_folio/openapi.json", Route::OpenApi),
    ("/_folio/health", Route::Health),
    ("/_folio/metrics", Route::Metrics),
    ("/_folio/stats", Route::Stats),
    ("/_folio/explain", Route::Explain),
    ("/_folio/purge", Route::Purge),
    ("/_folio/events", Route::Events),
    ("/_folio/reload", Route::Reload),
];

impl Route {
    pub(super) fn of(path: &str) -> Option<Self> {
        ROUTES
            .iter()
            .find(|(known, _)| *known == path)
            .map(|(_, route)| *route)
    }

    /// Mutations are POSTs; everything else is read with GET (and HEAD).
    pub(super) fn mutates(self) -> bool {
        matches!(self, Self::Purge | Self::Events | Self::Reload)
    }

    pub(super) fn allows(self, method: &Method) -> bool {
        if self.mutates() {
            method == Method::POST
        } else {
            method == Method::GET || method == Method::HEAD
        }
    }

    pub(super) fn allow_header(self) -> &'static str {
        if self.mutates() { "POST" } else { "GET, HEAD" }
    }

    /// Whether a request without a token must name the admin API by a name
    /// DNS rebinding cannot forge. Health carries no tenant's figures and
    /// load balancers probe it by any name. With tokens configured, neither
    /// do the static files (the dashboard's page, script and style, and the
    /// API's description): they hold no figures, and the figures need the
    /// token, so the dashboard loads under any name and then asks for it.
    pub(super) fn needs_trusted_name(self, auth: &AdminAuth) -> bool {
        match self {
            Self::Health => false,
            Self::Dashboard | Self::DashboardScript | Self::DashboardStyle | Self::OpenApi => {
                auth.is_open()
            }
            // Every other route, and any route added later: guarded.
            _ => true,
        }
    }
}

/// The admin API's routes as `(method, path)`, HEAD left implied by GET:
/// what the OpenAPI test compares `docs/admin-api.yaml` with. Not an API.
#[doc(hidden)]
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .map(|(path, route)| (if route.mutates() { "POST" } else { "GET" }, *path))
        .collect()
}
