//! The operator's config file (`--config folio.yaml`), optional: health
//! thresholds and the warming plan. Process settings stay on the command
//! line; endpoint rules stay in `policies/`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Everything the config file can say; all of it optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub health: HealthThresholds,
    pub warm: Option<WarmPlan>,
}

/// When `/_folio/health` says degraded (warning) or unhealthy (critical).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthThresholds {
    /// Hits over cacheable requests in the last minute; lower is worse.
    pub hit_rate: Threshold,
    /// Failed requests over all requests in the last minute; higher is worse.
    pub error_rate: Threshold,
    /// One Redis PING, in milliseconds; higher is worse.
    pub redis_latency_ms: Threshold,
    /// L1 bytes over its budget; higher is worse.
    pub l1_fill: Threshold,
    /// Rates are judged only over at least this many requests.
    pub min_requests: u64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            // Clients make misses at will (new URLs, reloads): a low hit
            // rate is worth a look, never a reason to be taken out.
            hit_rate: Threshold {
                warning: 0.5,
                critical: 0.0,
            },
            error_rate: Threshold {
                warning: 0.01,
                critical: 0.05,
            },
            redis_latency_ms: Threshold {
                warning: 20.0,
                critical: 200.0,
            },
            l1_fill: Threshold {
                warning: 0.98,
                critical: 1.5,
            },
            min_requests: 20,
        }
    }
}

/// A warning and a critical level.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

/// URLs to fetch at start-up and on a schedule, so they are cached before
/// users ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPlan {
    /// Fetch again this often (`10m`); only at start-up when absent.
    #[serde(default, deserialize_with = "duration")]
    pub every: Option<Duration>,
    /// Requests under way at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    pub urls: Vec<WarmUrl>,
}

/// One URL to warm, for one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmUrl {
    /// A path with query, e.g. `/api/v1/categories`.
    pub url: String,
    pub tenant: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_concurrency() -> usize {
    4
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads and checks the file; the error names file, line and problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::files::read_text(path, crate::files::MAX_TEXT_FILE)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let config: Self = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map_or(1, |l| l.line());
            format!("{}:{line}: {e}", path.display())
        })?;
        if let Some(warm) = &config.warm {
            if warm.concurrency == 0 {
                return Err(format!(
                    "{}: warm.concurrency: must be at least 1",
                    path.display()
                ));
            }
            if let Some(bad) = warm.urls.iter().find(|u| !u.url.starts_with('/')) {
                return Err(format!(
                    "{}: warm.urls: '{}' must be a path starting with '/'",
                    path.display(),
                    bad.url
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let config = Config::parse(
            Path::new("folio.yaml"),
            "health:\n  hit_rate: {warning: 0.6, critical: 0.2}\n  min_requests: 5\nwarm:\n  every: 10m\n  urls:\n    - url: /api/v1/categories\n      tenant: acme\n      headers: {Accept-Language: en}\n",
        )
        .unwrap();
        assert_eq!(config.health.hit_rate.warning, 0.6);
        assert_eq!(
            config.health.error_rate.critical, 0.05,
            "defaults fill the rest"
        );
        let warm = config.warm.unwrap();
        assert_eq!(warm.every, Some(Duration::from_secs(600)));
        assert_eq!(warm.concurrency, 4);
        assert_eq!(warm.urls[0].headers["Accept-Language"], "en");
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/folio.example.yaml"
        ));
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.warm.map(|w| w.urls.len()), Some(4));
    }

    #[test]
    fn mistakes_name_the_file_and_line() {
        let err = Config::parse(
            Path::new("f.yaml"),
            "health:\n  hit_rat: {warning: 1, critical: 0}\n",
        )
        .unwrap_err();
        assert!(err.starts_with("f.yaml:2:"), "{err}");
        assert!(err.contains("unknown field `hit_rat`"), "{err}");
        let err =
            Config::parse(Path::new("f.yaml"), "warm:\n  every: soon\n  urls: []\n").unwrap_err();
        assert!(err.contains("bad duration 'soon'"), "{err}");
        let err =
            Config::parse(Path::new("f.yaml"), "warm:\n  urls:\n    - url: nope\n").unwrap_err();
        assert!(err.contains("must be a path"), "{err}");
    }
}
