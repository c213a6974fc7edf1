//! Several threadchat nodes on one real Redis (issue 12): three nodes are
//! one chat, and a node or Redis itself going away costs only what it must.

mod common;

use std::time::Duration;

use common::redis::{RedisServer, Resp};

#[test]
fn the_harness_redis_answers_stops_and_restarts_empty_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(
        redis.command(&["SET", "threadchat-test", "kept?"]),
        Ok(Resp::Simple("OK".into()))
    );
    assert_eq!(redis.keys("*"), ["threadchat-test"]);
    redis.stop();
    assert!(redis.command(&["PING"]).is_err(), "stopped, yet it answers");
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["PING"]), Ok(Resp::Simple("PONG".into())));
    assert_eq!(redis.keys("*"), Vec::<String>::new(), "data survived");
    let pid = redis.pid().expect("running");
    drop(redis);
    assert!(
        common::eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "redis-server {pid} outlived its RedisServer"
    );
}
