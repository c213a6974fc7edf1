//! A panic in one connection's thread harms nobody else. The panic is
//! provoked through the `fault-injection` feature, on in test builds only.

mod common;

use common::{TestServer, online_besides_probe};
use threadchat::connection::PANIC_TRIGGER;

#[test]
fn a_reader_that_panics_leaves_once_and_everyone_else_keeps_chatting() {
    let server = TestServer::start();
    let mut victim = server.login("victim");
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    victim.recv_json();
    victim.recv_json();
    walter.recv_json();

    victim.chat(PANIC_TRIGGER);
    // The panicking reader still reports the departure, exactly once.
    let left = walter.recv_json();
    assert_eq!(left["user_left"], "victim");
    assert_eq!(maria.recv_json(), left);

    walter.chat("carry on");
    assert_eq!(walter.recv_json()["text"], "carry on");
    assert_eq!(maria.recv_json()["text"], "carry on");
    assert_eq!(online_besides_probe(&server, "probe"), ["walter", "maria"]);
}
