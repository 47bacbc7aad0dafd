//! `colorsort serve`: builds the server's configuration from the
//! environment and the command line, logs panics as single lines, starts
//! the server (and its metrics responder, if asked for) and stops it
//! cleanly on SIGTERM or SIGINT.

use super::args::{Args, Flags, Item, unknown};
use super::exit::{EXIT_FAILED, EXIT_OK, Error, print};
use crate::config::{self, ServeConfig};
use crate::metrics::http::{self, Responder};
use crate::server::Server;

/// Help for `colorsort serve`, with every setting and its default.
pub(super) fn usage() -> String {
    let defaults = ServeConfig::default();
    let mut s = String::from(
        "Usage: colorsort serve [OPTIONS]\n\n\
         Runs the server. Every option can also be set by its environment variable;\n\
         an option on the command line wins.\n\n",
    );
    for setting in config::SETTINGS {
        let flag = format!("{} {}", setting.flag, setting.value);
        s.push_str(&format!(
            "  {flag:<24} {} [{}]\n",
            setting.help,
            setting.show(&defaults)
        ));
        s.push_str(&format!("  {:<24} env {}\n", "", setting.env));
    }
    s.push_str("\nStops cleanly on SIGTERM or SIGINT: in-flight requests finish, then exit 0.\n");
    s
}

/// Runs `colorsort serve` until it is stopped.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    let mut config = ServeConfig::default();
    config::apply_env(&mut config, |name| std::env::var(name).ok())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let values: Vec<&str> = config::SETTINGS.iter().map(|s| s.flag).collect();
    let flags = Flags {
        values: &values,
        switches: &[],
    };
    while let Some(item) = args.next_item(&flags)? {
        match item {
            Item::Help => return print(&usage()).map(|()| EXIT_OK),
            Item::Value(f, value) => {
                let setting = config::setting(f).ok_or_else(|| unknown(f))?;
                setting
                    .apply(&mut config, &value, f)
                    .map_err(|e| Error::Usage(e.to_string()))?;
            }
            Item::Switch(f) => return Err(unknown(f)),
            Item::Positional(p) => {
                return Err(Error::Usage(format!("serve takes no argument {p:?}")));
            }
        }
    }
    crate::log::set_format(config.log_format);
    // A panic ends only the connection it happened on; log it as one line
    // like everything else rather than as the default multi-line report.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info
            .payload_as_str()
            .unwrap_or("(no message)")
            .replace('\n', " ");
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        log!(
            "panic in thread {}{place}: {message}",
            thread.name().unwrap_or("?")
        );
    }));
    // Bound first: a metrics address in use stops the start before the
    // data directory is touched.
    let metrics = match config.metrics {
        Some(addr) => Some(
            Responder::bind(addr, config.limits.timeout)
                .map_err(|e| Error::Failed(format!("cannot serve metrics on {addr}: {e}")))?,
        ),
        None => None,
    };
    let server = Server::bind(&config).map_err(|e| Error::Failed(e.to_string()))?;
    let addr = server.local_addr()?;
    let l = &config.limits;
    log!(
        "colorsort {} listening on {addr}; data {}; key {} ({}-bit RSA); limits: upload {} bytes, {} pixels, timeout {:.1}s, {} connections",
        env!("CARGO_PKG_VERSION"),
        config.data.display(),
        server.fingerprint(),
        server.key_bits(),
        l.max_upload,
        l.max_pixels,
        l.timeout.as_secs_f64(),
        l.max_connections
    );
    if let Some(responder) = metrics {
        log!(
            "metrics at http://{}{}",
            responder.local_addr()?,
            http::PATH
        );
        responder.spawn(server.metrics())?;
    }
    let stopper = server.stopper()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                log!("received {}; stopping", signal_name(signal));
                stopper.stop();
            }
            if let Some(signal) = received.next() {
                log!("received {} again; exiting now", signal_name(signal));
                std::process::exit(i32::from(EXIT_FAILED));
            }
        })?;
    server.run().map_err(|e| Error::Failed(e.to_string()))?;
    Ok(EXIT_OK)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_help_lists_every_setting() {
        let text = usage();
        for s in config::SETTINGS {
            assert!(text.contains(s.flag) && text.contains(s.env), "{}", s.flag);
        }
    }
}
