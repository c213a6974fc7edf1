//! The `threadchat` binary: parse flags, start logging, serve until SIGINT or
//! SIGTERM, then shut down gracefully; on SIGHUP, reload the TLS
//! certificate (`--tls-cert`). Everything else is in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};
use threadchat::config::Command;
use threadchat::server::StartError;
use threadchat::{Config, Server, auth, protocol};

fn main() -> ExitCode {
    let config = Config::parse();
    if config.redis.is_some() && config.mutual_follows {
        // A chat's audience would depend on the tokens of users on other
        // nodes, which this node does not hold.
        use clap::CommandFactory;
        Config::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--mutual-follows cannot be used with --redis (a node does not know the follows of users on other nodes)",
            )
            .exit();
    }
    if let Some(Command::Token {
        user,
        ttl,
        follows,
        rooms,
        role,
    }) = &config.command
    {
        let role = match role.as_deref() {
            None | Some("member") => protocol::Role::Member,
            Some("moderator") => protocol::Role::Moderator,
            Some(other) => {
                eprintln!("threadchat token: --role {other:?}: a role is moderator or member");
                return ExitCode::from(2);
            }
        };
        let grant = auth::Grant {
            username: user.clone(),
            ttl: *ttl,
            follows: follows.clone(),
            rooms: rooms.clone(),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            role,
        };
        return print_token(&config, &grant);
    }
    // Only threadchat's own lines: a library's trace output (tungstenite
    // logs every frame it reads) would print sign-in tokens, which must
    // never reach a log.
    let log_config = ConfigBuilder::new()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .add_filter_allow_str("threadchat")
        .build();
    // Colours only on a terminal, so that a log sent to a file stays plain.
    let colour = if std::io::stdout().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let _ = TermLogger::init(config.log_level, log_config, TerminalMode::Mixed, colour);

    // Register for signals before serving, so none is missed.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = config.host.clone();
    let tls = config.tls_cert.is_some();
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(StartError::Listen(e)) => {
            error!("cannot listen on {host}: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match server.spawn() {
        Ok(handle) => handle,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = handle.local_addr();
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    info!("threadchat listening: open {http}://{addr}/ in a browser; WebSocket at {ws}://{addr}/");
    if addr.ip().is_unspecified() {
        info!("listening on every interface: use this machine's address from other machines");
    }

    for signal in signals.forever() {
        if signal == SIGHUP {
            info!("SIGHUP received: reloading the TLS certificate");
            handle.reload_tls();
            continue;
        }
        info!("signal {signal} received, shutting down");
        break;
    }
    handle.shutdown();
    ExitCode::SUCCESS
}

/// `threadchat token --user NAME`: prints a token signed with the configured
/// secret (flag, file or environment), for a teacher to hand out. A secret
/// too short to be safe, or a lifetime the server would refuse
/// (`--jwt-max-lifetime`), is an error here too.
fn print_token(config: &Config, grant: &auth::Grant) -> ExitCode {
    let secret = match auth::secret_of(config) {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            eprintln!(
                "threadchat token: no secret; give --jwt-secret, --jwt-secret-file or ${}",
                auth::JWT_SECRET_ENV
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("threadchat token: {e}");
            return ExitCode::from(2);
        }
    };
    if grant.ttl > config.jwt_max_lifetime {
        eprintln!(
            "threadchat token: --ttl is longer than --jwt-max-lifetime ({} s): \
             the server would refuse the token",
            config.jwt_max_lifetime.as_secs()
        );
        return ExitCode::from(2);
    }
    match auth::mint_grant(secret.as_bytes(), grant) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("threadchat token: {e}");
            ExitCode::from(2)
        }
    }
}
