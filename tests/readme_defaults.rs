//! The README's table of defaults says what `src/config/` says.

use std::time::Duration;

use threadchat::Config;

fn seconds(d: Duration) -> String {
    format!("`{}` s", d.as_secs_f64())
}

fn on_off(flag: bool) -> String {
    if flag { "on" } else { "off" }.to_string()
}

#[test]
fn readme_defaults_table_matches_the_config() {
    let readme = include_str!("../README.md");
    let c = Config::default();
    let expected = [
        ("--port", format!("`{}`", threadchat::config::DEFAULT_PORT)),
        ("--host", format!("`{}`", c.host)),
        (
            "--log-level",
            format!("`{}`", c.log_level.as_str().to_lowercase()),
        ),
        ("--max-message-bytes", format!("`{}`", c.max_message_bytes)),
        ("--max-chat-chars", format!("`{}`", c.max_chat_chars)),
        ("--rate-limit", format!("`{}`", c.rate_limit)),
        ("--outbound-messages", format!("`{}`", c.outbound_messages)),
        ("--outbound-bytes", format!("`{}`", c.outbound_bytes)),
        ("--handshake-timeout", seconds(c.handshake_timeout)),
        ("--ping-interval", seconds(c.ping_interval)),
        ("--idle-timeout", seconds(c.idle_timeout)),
        ("--write-timeout", seconds(c.write_timeout)),
        ("--max-connections", format!("`{}`", c.max_connections)),
        (
            "--max-connections-per-ip",
            format!("`{}`", c.max_connections_per_ip),
        ),
        ("--login-timeout", seconds(c.login_timeout)),
        ("--max-rooms", format!("`{}`", c.max_rooms)),
        ("--history", format!("`{}`", c.history)),
        ("--history-max", format!("`{}`", c.history_max)),
        ("--retain", format!("`{}`", c.retain)),
        ("--retain-total", format!("`{}`", c.retain_total)),
        ("--db", format!("`{}`", c.db)),
        ("--fsync", on_off(c.fsync)),
        ("--cluster", format!("`{}`", c.cluster)),
        ("--jwt-leeway", seconds(c.jwt_leeway)),
        ("--jwt-max-lifetime", seconds(c.jwt_max_lifetime)),
        ("--mutual-follows", on_off(c.mutual_follows)),
        ("--edit-window", format!("`{}` s", c.edit_window)),
        ("--inside-names", on_off(c.inside_names)),
        ("--no-admin", on_off(c.no_admin)),
        (
            "--broadcast-batch-bytes",
            format!("`{}`", c.broadcast_batch_bytes),
        ),
        ("--write-batch", format!("`{}`", c.write_batch)),
    ];
    for (flag, value) in expected {
        let row = format!("| `{flag}` | {value} |");
        assert!(readme.contains(&row), "README lacks the row {row:?}");
    }
    assert!(
        readme.contains(&format!(
            "sustained excess ({} refusals in a row)",
            threadchat::config::RATE_LIMIT_STRIKES
        )),
        "README's rate-limit strike count differs from the config"
    );
}

/// `10 s`, `2 s`, `100 ms`: how the README writes a fixed timing.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[test]
fn readme_cluster_timings_match_the_config() {
    use threadchat::config::*;
    let readme = include_str!("../README.md");
    let rows = [
        ("`REDIS_LEASE`", human(REDIS_LEASE)),
        ("`REDIS_LEASE_RENEW`", human(REDIS_LEASE_RENEW)),
        ("`REDIS_COMMAND_TIMEOUT`", human(REDIS_COMMAND_TIMEOUT)),
        (
            "`REDIS_BACKOFF_MIN`, `REDIS_BACKOFF_MAX`",
            format!("{}, {}", human(REDIS_BACKOFF_MIN), human(REDIS_BACKOFF_MAX)),
        ),
        ("`REDIS_LISTEN_POLL`", human(REDIS_LISTEN_POLL)),
        ("`REDIS_LISTEN_PING`", human(REDIS_LISTEN_PING)),
    ];
    for (constant, value) in rows {
        let row = format!("| {constant} | {value} |");
        assert!(readme.contains(&row), "README lacks the row {row:?}");
    }
    // The prose quotes the lease too.
    let lease = format!(
        "renews a {} lease\n  every {}",
        human(REDIS_LEASE),
        human(REDIS_LEASE_RENEW)
    );
    assert!(readme.contains(&lease), "README lacks {lease:?}");
}

#[test]
fn clap_defaults_match_config_default() {
    // The flags' defaults (clap) and `Config::default()` are written twice;
    // this keeps them equal.
    use clap::Parser;
    let parsed = Config::try_parse_from(["threadchat"]).unwrap();
    let default = Config::default();
    assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
}
