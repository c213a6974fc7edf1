//! Many users logging in at once: everyone sees their own login first, then
//! every later one, each list one name longer, all in one order.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::{TestServer, users};

const USERS: usize = 60;

#[test]
fn concurrent_logins_reach_everyone_in_one_consistent_join_order() {
    let server = TestServer::start();
    let addr = server.addr;
    let start = Arc::new(Barrier::new(USERS));
    let clients: Vec<_> = (0..USERS)
        .map(|i| {
            let start = start.clone();
            thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                let name = format!("user{i}");
                start.wait();
                let own = client.login(&name);
                let mut list = users(&own);
                assert_eq!(list.last(), Some(&name), "own login lists self last");
                while list.len() < USERS {
                    let next = client.recv_json();
                    assert_eq!(next["type"], "login", "{next}");
                    let grown = users(&next);
                    let joined = next["user_joined"].as_str().unwrap().to_string();
                    let mut expected = list.clone();
                    expected.push(joined);
                    assert_eq!(
                        grown, expected,
                        "each login adds exactly its user at the end"
                    );
                    list = grown;
                }
                list
            })
        })
        .collect();
    let lists: Vec<Vec<String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for list in &lists[1..] {
        assert_eq!(list, &lists[0], "two clients saw different join orders");
    }
}
