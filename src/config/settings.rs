//! The settings table, [`SETTINGS`]: for each setting of `colorsort serve`
//! its flag, its `COLORSORT_*` environment variable, its help line, how its
//! value is parsed into a [`ServeConfig`] and how the value is shown; and
//! the parsers of the values (sizes, durations, counts) it shares with the
//! other subcommands.

use super::{DEFAULT_MAX_MEMORY, ServeConfig};
use crate::sshsig::check_namespace;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A setting that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The flag or environment variable that carried the value.
    pub source: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

impl std::error::Error for Error {}

/// One row of the settings table.
pub struct Setting {
    /// The command-line flag, e.g. `--max-upload`.
    pub flag: &'static str,
    /// The environment variable, e.g. `COLORSORT_MAX_UPLOAD`.
    pub env: &'static str,
    /// Placeholder for the value in help text.
    pub value: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Parses a value into the configuration.
    apply: fn(&mut ServeConfig, &str) -> Result<(), String>,
    /// Renders the current value, for help text.
    show: fn(&ServeConfig) -> String,
}

/// Every setting of `colorsort serve`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        flag: "--listen",
        env: "COLORSORT_LISTEN",
        value: "ADDR",
        help: "address and port to listen on",
        apply: |c, v| {
            c.listen = v
                .parse()
                .map_err(|_| format!("{v:?} is not an address like 0.0.0.0:6666"))?;
            Ok(())
        },
        show: |c| c.listen.to_string(),
    },
    Setting {
        flag: "--data",
        env: "COLORSORT_DATA",
        value: "DIR",
        help: "data directory: key, red/ green/ blue/ not_trusted/",
        apply: |c, v| {
            if v.is_empty() {
                return Err("the data directory cannot be empty".into());
            }
            c.data = PathBuf::from(v);
            Ok(())
        },
        show: |c| c.data.display().to_string(),
    },
    Setting {
        flag: "--key-bits",
        env: "COLORSORT_KEY_BITS",
        value: "BITS",
        help: "size of the RSA key generated on first start: 2048, 3072 or 4096",
        apply: |c, v| {
            let bits = parse_u64(v)? as usize;
            if !crate::identity::GENERATE_BITS.contains(&bits) {
                let allowed = crate::identity::GENERATE_BITS
                    .map(|b| b.to_string())
                    .join(", ");
                return Err(format!("{bits} is not one of {allowed}"));
            }
            c.key_bits = bits;
            Ok(())
        },
        show: |c| c.key_bits.to_string(),
    },
    Setting {
        flag: "--allowed-signers",
        env: "COLORSORT_ALLOWED_SIGNERS",
        value: "FILE",
        help: "ssh allowed_signers file: only SEALs signed by these senders are filed by colour \
               (default DATA/allowed_signers if it exists; without one, every SEAL is); reread on SIGHUP",
        apply: |c, v| {
            c.allowed_signers = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
        show: |c| {
            c.allowed_signers
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string())
        },
    },
    Setting {
        flag: "--signature-namespace",
        env: "COLORSORT_SIGNATURE_NAMESPACE",
        value: "NS",
        help: "namespace signed uploads must be signed for (ssh-keygen -Y sign -n NS)",
        apply: |c, v| {
            check_namespace(v)?;
            c.signature_namespace = v.to_string();
            Ok(())
        },
        show: |c| c.signature_namespace.clone(),
    },
    Setting {
        flag: "--max-upload",
        env: "COLORSORT_MAX_UPLOAD",
        value: "BYTES",
        help: "largest upload accepted (suffixes K, M, G are powers of 1024)",
        apply: |c, v| {
            c.limits.max_upload = parse_size(v)?;
            Ok(())
        },
        show: |c| show_size(c.limits.max_upload),
    },
    Setting {
        flag: "--max-pixels",
        env: "COLORSORT_MAX_PIXELS",
        value: "N",
        help: "largest image accepted, in pixels, checked before decoding",
        apply: |c, v| {
            c.limits.max_pixels = parse_positive(v)?;
            Ok(())
        },
        show: |c| c.limits.max_pixels.to_string(),
    },
    Setting {
        flag: "--timeout",
        env: "COLORSORT_TIMEOUT",
        value: "SECS",
        help: "read/write timeout and request-line deadline (e.g. 30, 1.5, 500ms)",
        apply: |c, v| {
            c.limits.timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.timeout),
    },
    Setting {
        flag: "--min-rate",
        env: "COLORSORT_MIN_RATE",
        value: "BYTES",
        help: "slowest payload transfer accepted, per second, after one timeout of grace",
        apply: |c, v| {
            c.limits.min_rate = parse_size(v)?.max(1);
            Ok(())
        },
        show: |c| show_size(c.limits.min_rate),
    },
    Setting {
        flag: "--max-connections",
        env: "COLORSORT_MAX_CONNECTIONS",
        value: "N",
        help: "most connections at once; then the longest-idle one is evicted",
        apply: |c, v| {
            c.limits.max_connections = parse_positive(v)? as usize;
            Ok(())
        },
        show: |c| c.limits.max_connections.to_string(),
    },
    Setting {
        flag: "--max-memory",
        env: "COLORSORT_MAX_MEMORY",
        value: "BYTES",
        help: "memory for payloads and decoded pixels; past it, ERR busy (lower in a small container)",
        apply: |c, v| {
            c.max_memory = Some(parse_size(v)?);
            Ok(())
        },
        show: |c| show_size(c.max_memory.unwrap_or(DEFAULT_MAX_MEMORY)),
    },
    Setting {
        flag: "--shutdown-grace",
        env: "COLORSORT_SHUTDOWN_GRACE",
        value: "SECS",
        help: "time in-flight requests get to finish on SIGTERM or SIGINT",
        apply: |c, v| {
            c.limits.shutdown_grace = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.shutdown_grace),
    },
    Setting {
        flag: "--slow-grace",
        env: "COLORSORT_SLOW_GRACE",
        value: "SECS",
        help: "how far behind the minimum rate an upload, or how long a reply unread, before it may be evicted",
        apply: |c, v| {
            c.limits.slow_grace = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.slow_grace),
    },
    Setting {
        flag: "--large-decode",
        env: "COLORSORT_LARGE_DECODE",
        value: "BYTES",
        help: "decodes that may take more memory than this take turns, as many at once as CPUs",
        apply: |c, v| {
            c.limits.large_decode = parse_size(v)?;
            Ok(())
        },
        show: |c| show_size(c.limits.large_decode),
    },
    Setting {
        flag: "--max-workers",
        env: "COLORSORT_MAX_WORKERS",
        value: "N",
        help: "decode worker processes alive at most, idle and busy (each decode runs in one)",
        apply: |c, v| {
            c.limits.max_workers = parse_positive(v)? as usize;
            Ok(())
        },
        show: |c| c.limits.max_workers.to_string(),
    },
    Setting {
        flag: "--decode-timeout",
        env: "COLORSORT_DECODE_TIMEOUT",
        value: "DURATION",
        help: "a decode worker that takes longer to open or to decode one image is killed",
        apply: |c, v| {
            c.limits.decode_timeout = parse_duration(v)?;
            if c.limits.decode_timeout.is_zero() {
                return Err("the decode timeout must be above 0".into());
            }
            Ok(())
        },
        show: |c| show_duration(c.limits.decode_timeout),
    },
    Setting {
        flag: "--metrics",
        env: "COLORSORT_METRICS",
        value: "ADDR",
        help: "address and port to serve Prometheus metrics on (GET /metrics), or off",
        apply: |c, v| {
            c.metrics = match v {
                "off" => None,
                v => Some(
                    v.parse()
                        .map_err(|_| format!("{v:?} is not off or an address like 0.0.0.0:9100"))?,
                ),
            };
            Ok(())
        },
        show: |c| c.metrics.map_or_else(|| "off".into(), |a| a.to_string()),
    },
    Setting {
        flag: "--log-format",
        env: "COLORSORT_LOG_FORMAT",
        value: "FORMAT",
        help: "log lines as text, or as json: one object per line",
        apply: |c, v| {
            c.log_format =
                crate::log::Format::parse(v).ok_or_else(|| format!("{v:?} is not text or json"))?;
            Ok(())
        },
        show: |c| c.log_format.as_str().into(),
    },
];

impl Setting {
    /// Applies `value`, naming `source` (the flag or variable) on error.
    pub fn apply(&self, config: &mut ServeConfig, value: &str, source: &str) -> Result<(), Error> {
        (self.apply)(config, value.trim()).map_err(|reason| Error {
            source: source.to_string(),
            reason,
        })
    }

    /// The value this setting has in `config`, as help text shows it.
    pub fn show(&self, config: &ServeConfig) -> String {
        (self.show)(config)
    }
}

/// Finds the setting for a flag.
pub fn setting(flag: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.flag == flag)
}

/// Applies every `COLORSORT_*` variable that `lookup` finds.
pub fn apply_env(
    config: &mut ServeConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    for s in SETTINGS {
        if let Some(value) = lookup(s.env) {
            s.apply(config, &value, s.env)?;
        }
    }
    Ok(())
}

fn parse_u64(v: &str) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not a whole number"));
    }
    v.parse().map_err(|_| format!("{v} is too large"))
}

fn parse_positive(v: &str) -> Result<u64, String> {
    match parse_u64(v)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Parses a byte count with an optional binary suffix: `65536`, `64K`,
/// `64M`, `1G` (also `KiB`, `MiB`, `GiB`).
pub fn parse_size(v: &str) -> Result<u64, String> {
    let upper = v.to_ascii_uppercase();
    let digits_end = upper
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(upper.len());
    let (digits, suffix) = upper.split_at(digits_end);
    let shift = match suffix.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{v:?} is not a size like 65536, 64K, 64M or 1G")),
    };
    let n =
        parse_u64(digits).map_err(|_| format!("{v:?} is not a size like 65536, 64K, 64M or 1G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{v} is too large"))
}

/// Parses a duration: seconds, possibly fractional (`30`, `1.5`, `30s`), or
/// milliseconds (`500ms`). Zero is refused: a zero timeout would mean none.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?} is not a duration like 30, 1.5, 30s or 500ms");
    let d = if let Some(ms) = v.strip_suffix("ms") {
        Duration::from_millis(parse_u64(ms.trim()).map_err(|_| bad())?)
    } else {
        let secs = v.strip_suffix('s').unwrap_or(v).trim();
        if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        let f: f64 = secs.parse().map_err(|_| bad())?;
        if !(f.is_finite() && f <= 1e9) {
            return Err(bad());
        }
        Duration::from_secs_f64(f)
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A byte count as settings take it: `64M`, `1G`, `1000`.
pub fn show_size(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::path::PathBuf;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("65536", Some(65536)),
            ("64K", Some(64 << 10)),
            ("64k", Some(64 << 10)),
            ("64M", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("1G", Some(1 << 30)),
            ("", None),
            ("-1", None),
            ("1.5M", None),
            ("12X", None),
            ("18446744073709551616", None),
            ("17179869184G", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), *want, "input {input:?}");
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("30", Some(Duration::from_secs(30))),
            ("30s", Some(Duration::from_secs(30))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("0", None),
            ("0ms", None),
            ("-1", None),
            ("abc", None),
            ("inf", None),
            ("1e300", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), *want, "input {input:?}");
        }
    }

    #[test]
    fn a_memory_budget_is_set_only_when_given() {
        assert_eq!(ServeConfig::default().max_memory, None);
        let flag = setting("--max-memory").unwrap();
        assert_eq!(flag.show(&ServeConfig::default()), "1G");
        let cases: [(&str, Option<u64>); 4] = [
            ("512M", Some(512 << 20)),
            ("1G", Some(1 << 30)),
            ("0", Some(0)),
            ("lots", None),
        ];
        for (value, want) in cases {
            let mut c = ServeConfig::default();
            let result = flag.apply(&mut c, value, "--max-memory");
            assert_eq!(result.is_ok(), want.is_some(), "{value}");
            assert_eq!(c.max_memory, want, "{value}");
            assert_eq!(c.limits, Limits::default(), "{value}");
        }
    }

    #[test]
    fn flags_and_env_apply_and_flags_win() {
        let mut c = ServeConfig::default();
        let env = |name: &str| match name {
            "COLORSORT_MAX_UPLOAD" => Some("1M".to_string()),
            "COLORSORT_TIMEOUT" => Some("5".to_string()),
            _ => None,
        };
        apply_env(&mut c, env).unwrap();
        assert_eq!(c.limits.max_upload, 1 << 20);
        assert_eq!(c.limits.timeout, Duration::from_secs(5));
        setting("--max-upload")
            .unwrap()
            .apply(&mut c, "2M", "--max-upload")
            .unwrap();
        assert_eq!(c.limits.max_upload, 2 << 20);
    }

    #[test]
    fn metrics_and_log_format_settings() {
        let cases: &[(&str, &str, &str)] = &[
            ("--metrics", "off", "off"),
            ("--metrics", "127.0.0.1:9100", "127.0.0.1:9100"),
            ("--metrics", "[::]:9100", "[::]:9100"),
            ("--log-format", "text", "text"),
            ("--log-format", "json", "json"),
        ];
        for (flag, value, shown) in cases {
            let mut c = ServeConfig::default();
            let s = setting(flag).unwrap();
            s.apply(&mut c, value, flag).unwrap();
            assert_eq!(s.show(&c), *shown, "{flag} {value}");
        }
        let mut c = ServeConfig::default();
        setting("--metrics")
            .unwrap()
            .apply(&mut c, "0.0.0.0:9100", "--metrics")
            .unwrap();
        assert_eq!(c.metrics, Some("0.0.0.0:9100".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_their_source() {
        let mut c = ServeConfig::default();
        let cases = [
            ("--key-bits", "1024"),
            ("--listen", "nowhere"),
            ("--max-connections", "0"),
            ("--data", ""),
            ("--signature-namespace", ""),
            ("--signature-namespace", "two words"),
            ("--signature-namespace", "a,b"),
            ("--signature-namespace", "caf\u{e9}"),
            ("--metrics", "9100"),
            ("--metrics", ""),
            ("--log-format", "JSON"),
        ];
        for (flag, value) in cases {
            let err = setting(flag)
                .unwrap()
                .apply(&mut c, value, flag)
                .unwrap_err();
            assert_eq!(err.source, flag);
        }
    }

    #[test]
    fn every_setting_has_a_flag_and_a_variable() {
        for s in SETTINGS {
            assert!(s.flag.starts_with("--"), "{}", s.flag);
            let expect = format!(
                "COLORSORT_{}",
                s.flag[2..].to_ascii_uppercase().replace('-', "_")
            );
            assert_eq!(s.env, expect);
            // Showing a default and applying it back gives the same configuration.
            let mut c = ServeConfig::default();
            let shown = s.show(&ServeConfig::default());
            s.apply(&mut c, &shown, s.flag).unwrap();
            assert_eq!(s.show(&c), shown);
        }
    }

    #[test]
    fn signer_settings() {
        let mut c = ServeConfig::default();
        let (path, given) = c.allowed_signers_path();
        assert_eq!(
            (path, given),
            (PathBuf::from("/data/allowed_signers"), false)
        );
        let flag = setting("--allowed-signers").unwrap();
        flag.apply(&mut c, "/etc/colorsort/signers", "--allowed-signers")
            .unwrap();
        assert_eq!(
            c.allowed_signers_path(),
            (PathBuf::from("/etc/colorsort/signers"), true)
        );
        // An empty value means not given, so that a variable can be unset
        // by an empty override.
        flag.apply(&mut c, "", "--allowed-signers").unwrap();
        assert_eq!(c.allowed_signers, None);
        let ns = setting("--signature-namespace").unwrap();
        ns.apply(&mut c, "photos@example.com", "--signature-namespace")
            .unwrap();
        assert_eq!(c.signature_namespace, "photos@example.com");
        let long = "n".repeat(crate::sshsig::MAX_NAMESPACE + 1);
        assert!(ns.apply(&mut c, &long, "--signature-namespace").is_err());
        assert!(
            ns.apply(&mut c, &long[1..], "--signature-namespace")
                .is_ok()
        );
    }
}
