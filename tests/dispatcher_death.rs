//! A dead dispatcher ends the process, so that a supervisor restarts it
//! instead of leaving a server up with no chat.

mod common;

use std::time::{Duration, Instant};

use common::{BinaryServer, Client, WAIT};
use threadchat::dispatcher::DISPATCHER_PANIC_TRIGGER;

#[test]
fn a_panic_in_the_dispatcher_exits_the_process_non_zero_with_the_cause_logged() {
    let mut server = BinaryServer::start_logged(&["--db", ":memory:"]);
    let mut walter = Client::connect(server.addr);
    walter.login("walter");
    walter.chat(DISPATCHER_PANIC_TRIGGER);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server lived on without its dispatcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70), "{status}");
    let log = server.stop_and_read_log();
    assert!(log.contains("dispatcher died"), "{log}");
}
