//! `colorsort serve`: builds the server's configuration from the
//! environment and the command line, logs panics as single lines, starts
//! the server (and its metrics responder, if asked for), says whether known
//! senders are on (and warns when they are not), rereads the allowed_signers
//! file on SIGHUP and stops cleanly on SIGTERM or SIGINT.

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
        let default = setting.show(&defaults);
        let default = if default.is_empty() {
            String::new()
        } else {
            format!(" [{default}]")
        };
        s.push_str(&format!("  {flag:<24} {}{default}\n", setting.help));
        s.push_str(&format!("  {:<24} env {}\n", "", setting.env));
    }
    s.push_str(
        "\nRereads the allowed_signers file on SIGHUP; a file that cannot be used leaves the\n\
         list in force as it was. Stops cleanly on SIGTERM or SIGINT: in-flight requests\n\
         finish, then exit 0.\n",
    );
    s
}

/// The server's file-creation mask, whatever it is started with: nothing it
/// creates is writable by anyone else or readable outside its group.
const UMASK: u32 = 0o027;

/// Runs `colorsort serve` until it is stopped.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    // First, before anything is created or any thread started.
    crate::process::set_umask(UMASK);
    // Nothing this process or its decode workers exec can gain privileges,
    // whatever the container runtime applied (`docker stack deploy` does
    // not apply no-new-privileges).
    crate::sandbox::no_new_privs().map_err(failed("cannot set no_new_privs"))?;
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
    // Handlers are in place before the server says it listens: a SIGHUP
    // sent as soon as it does must reload, not end the process.
    let stopper = server
        .stopper()
        .map_err(failed("cannot make the stop handle"))?;
    let reloader = server.reloader();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(failed("cannot install the signal handlers"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    log!("received SIGHUP; {}", reloader.reload());
                } else if !stopping {
                    log!("received {}; stopping", signal_name(signal));
                    stopping = true;
                    stopper.stop();
                } else {
                    log!("received {} again; exiting now", signal_name(signal));
                    std::process::exit(i32::from(EXIT_FAILED));
                }
            }
        })
        .map_err(failed("cannot start the signal thread"))?;
    log!("{}", mode_line(&server));
    let addr = server
        .local_addr()
        .map_err(failed("cannot read the listening address"))?;
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
            responder
                .local_addr()
                .map_err(failed("cannot read the metrics address"))?,
            http::PATH
        );
        responder
            .spawn(server.metrics())
            .map_err(failed("cannot start the metrics responder"))?;
    }
    server.run().map_err(|e| Error::Failed(e.to_string()))?;
    Ok(EXIT_OK)
}

/// Labels an I/O failure of the server's start with what failed: it is
/// not a write to stdout, so never a quiet broken pipe.
fn failed(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Failed(format!("{what}: {e}"))
}

/// The start-up line on who may file by colour: in v1 mode, a warning.
fn mode_line(server: &Server) -> String {
    let namespace = server.namespace();
    match server.known_senders() {
        (path, Some(entries)) => format!(
            "known senders: on; {entries} signer(s) listed in {}; only SEALs signed by them \
             for namespace {namespace} are filed by colour, unsigned SEALs and PUTs go to not_trusted/",
            path.display()
        ),
        (path, None) => format!(
            "known senders: off (no {}): WARNING: anyone who fetches the key can file into red/ green/ blue/; \
             list the trusted senders' keys in that file (or pass --allowed-signers) to require signatures \
             for namespace {namespace}",
            path.display()
        ),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGHUP => "SIGHUP",
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
