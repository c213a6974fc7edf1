//! Presence as changes (`"presence":"changes"` at login): the whole list
//! once, in the client's own `login` answer, then one `presence` message
//! per flush with who joined and who left; clients that do not ask keep
//! the tutorial's `login` and `disconnect` messages exactly.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::redis::RedisServer;
use common::{Client, TestServer, WAIT, texts, tutorial_view, users};
use serde_json::{Value, json};
use threadchat::Config;
use tungstenite::Message;

fn unlimited() -> Config {
    Config {
        rate_limit: 0,
        ..Config::ephemeral()
    }
}

/// Logs in asking for changes; returns the client's own `login` answer
/// (after its history, if any).
fn login_changes(client: &mut Client, name: &str) -> Value {
    login_changes_with(
        client,
        json!({"type": "login", "username": name, "presence": "changes"}),
    )
}

fn login_changes_with(client: &mut Client, login: Value) -> Value {
    let name = login["username"].as_str().unwrap().to_string();
    client.send_json(login);
    let answer = client.recv_until(|m| m["type"] != "history");
    assert_eq!(answer["type"], "login", "login of {name}: {answer}");
    assert_eq!(answer["user_joined"], name);
    answer
}

/// A list as a client that asked for changes keeps it: remove `left`,
/// append `joined`, or take `users` whole.
fn apply(list: &mut Vec<String>, message: &Value) {
    assert_eq!(message["type"], "presence", "{message}");
    if let Some(all) = message["users"].as_array() {
        *list = all
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        return;
    }
    let left: Vec<&str> = names(&message["left"]);
    list.retain(|n| !left.contains(&n.as_str()));
    list.extend(names(&message["joined"]).into_iter().map(String::from));
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

/// Reads presence messages until `list` equals `wanted`; returns how many
/// it took. Anything else that arrives fails the test.
fn follow_until(client: &mut Client, list: &mut Vec<String>, wanted: &[&str]) -> usize {
    let mut messages = 0;
    while list.iter().map(String::as_str).collect::<Vec<_>>() != wanted {
        let message = client.recv_json();
        apply(list, &message);
        messages += 1;
    }
    messages
}

#[test]
fn the_own_login_answer_lists_everyone_and_later_joins_come_as_presence() {
    let server = TestServer::with(unlimited());
    let _walter = server.login("walter");
    let mut maria = server.connect();
    let answer = login_changes(&mut maria, "maria");
    assert_eq!(users(&answer), ["walter", "maria"]);
    let _laura = server.login("laura");
    assert_eq!(
        maria.recv_json(),
        json!({"type": "presence", "room": "lobby", "joined": ["laura"], "left": []})
    );
}

#[test]
fn many_joins_at_once_come_as_fewer_presence_messages_in_join_order() {
    const JOINERS: usize = 100;
    let server = TestServer::with(unlimited());
    let mut observer = server.connect();
    let mut list = users(&login_changes(&mut observer, "observer"));
    let mut clients: Vec<Client> = (0..JOINERS).map(|_| server.connect()).collect();
    let barrier = Arc::new(Barrier::new(JOINERS));
    let threads: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(i, mut client)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.send_json(json!({"type": "login", "username": format!("u{i}")}));
                client.recv_until(|m| m["type"] == "login");
                client
            })
        })
        .collect();
    let clients: Vec<Client> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut messages = 0;
    while list.len() < JOINERS + 1 {
        apply(&mut list, &observer.recv_json());
        messages += 1;
    }
    assert!(
        messages < JOINERS,
        "{JOINERS} joins at once came as {messages} presence messages: none coalesced"
    );
    // Each joiner announced once, and the list is the server's, in order.
    let unique: HashSet<&String> = list.iter().collect();
    assert_eq!(unique.len(), list.len(), "a name announced twice: {list:?}");
    let mut probe = server.connect();
    let answer = login_changes(&mut probe, "probe");
    let mut server_list = users(&answer);
    server_list.pop();
    assert_eq!(list, server_list);
    drop(clients);
}

#[test]
fn a_chat_from_a_joiner_comes_after_the_presence_that_announces_it() {
    // Without history a chat is broadcast as it comes, so a login and the
    // chat right behind it often share a batch: the order is the flush's.
    let server = TestServer::with(Config {
        history: 0,
        ..unlimited()
    });
    let mut observer = server.connect();
    let mut list = users(&login_changes(&mut observer, "observer"));
    for round in 0..20 {
        let name = format!("j{round}");
        let mut joiner = server.connect();
        // The login and the chat go out together; the chat is not waited for.
        joiner.send_json(json!({"type": "login", "username": name}));
        joiner.chat(&format!("hello from {name}"));
        loop {
            let message = observer.recv_json();
            if message["type"] == "chat" {
                assert_eq!(message["username"], name.as_str());
                assert!(
                    list.contains(&name),
                    "{name}'s chat came before the presence announcing {name}: {list:?}"
                );
                break;
            }
            apply(&mut list, &message);
        }
        joiner.send_json(json!({"type": "disconnect", "username": name}));
        follow_until(&mut observer, &mut list, &["observer"]);
    }
}

#[test]
fn a_leaver_and_a_joiner_at_once_leave_the_list_right() {
    let server = TestServer::with(unlimited());
    let mut observer = server.connect();
    login_changes(&mut observer, "observer");
    let mut list = vec!["observer".to_string()];
    for round in 0..20 {
        let leaver_name = format!("l{round}");
        let mut leaver = server.login(&leaver_name);
        follow_until(&mut observer, &mut list, &["observer", &leaver_name]);
        let mut joiner = server.connect();
        let joiner_name = format!("n{round}");
        // The leaver goes as the joiner comes: often in one batch.
        joiner.send_json(json!({"type": "login", "username": joiner_name}));
        leaver.send_json(json!({"type": "disconnect", "username": leaver_name}));
        follow_until(&mut observer, &mut list, &["observer", &joiner_name]);
        joiner.send_json(json!({"type": "disconnect", "username": joiner_name}));
        follow_until(&mut observer, &mut list, &["observer"]);
    }
}

#[test]
fn one_who_joins_and_leaves_in_one_batch_is_announced_to_no_one_but_its_chat_arrives() {
    // A login whose `since` is older than the room's tail waits for the
    // store's answer; the chat and the disconnect sent behind it wait with
    // it, and are handled in the same event as the admission: one batch.
    let server = TestServer::with(unlimited());
    let mut walter = server.login("walter");
    let tail = threadchat::config::RECENT_PER_ROOM + 10;
    for i in 0..tail {
        walter.chat(&format!("filler {i}"));
    }
    for _ in 0..tail {
        walter.recv_until(|m| m["type"] == "chat");
    }
    let mut observer = server.connect();
    login_changes(&mut observer, "observer");
    walter.recv_until(|m| m["type"] == "login");
    // The three go out in one write, so the reader has them all at once.
    let mut ghost = server.connect();
    for message in [
        json!({"type": "login", "username": "ghost", "since": 1}),
        json!({"type": "chat", "text": "boo"}),
        json!({"type": "disconnect", "username": "ghost"}),
    ] {
        ghost.ws.write(Message::text(message.to_string())).unwrap();
    }
    ghost.ws.flush().unwrap();
    let boo = observer.recv_json();
    assert_eq!(boo["type"], "chat", "ghost was announced: {boo}");
    assert_eq!(boo["text"], "boo");
    // Nothing about ghost follows: the next thing is a chat sent now.
    walter.chat("after");
    let after = observer.recv_json();
    assert_eq!(
        after["text"], "after",
        "expected nothing before it, got {after}"
    );
    // A tutorial client heard ghost come and go, as the tutorial does.
    assert_eq!(walter.recv_json()["user_joined"], "ghost");
}

#[test]
fn the_name_of_one_who_left_taken_by_a_joiner_is_in_left_and_joined() {
    let server = TestServer::with(unlimited());
    let mut observer = server.connect();
    let mut list = users(&login_changes(&mut observer, "observer"));
    let walter = server.login("walter");
    follow_until(&mut observer, &mut list, &["observer", "walter"]);
    let _laura = server.login("laura");
    follow_until(&mut observer, &mut list, &["observer", "walter", "laura"]);
    walter.vanish();
    let _walter_again = server.login("walter");
    follow_until(&mut observer, &mut list, &["observer", "laura", "walter"]);
}

#[test]
fn a_rename_sends_the_whole_list_keeping_the_join_order() {
    let server = TestServer::with(unlimited());
    let mut observer = server.connect();
    let mut list = users(&login_changes(&mut observer, "observer"));
    let mut walter = server.login("walter");
    let _laura = server.login("laura");
    follow_until(&mut observer, &mut list, &["observer", "walter", "laura"]);
    walter.send_json(json!({"type": "login", "username": "heisenberg"}));
    let message = observer.recv_json();
    assert_eq!(
        message,
        json!({"type": "presence", "room": "lobby", "users": ["observer", "heisenberg", "laura"]})
    );
}

#[test]
fn a_rename_may_switch_to_changes_and_back() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria joined
    maria.send_json(json!({"type": "login", "username": "mary", "presence": "changes"}));
    let answer = maria.recv_json();
    assert_eq!(answer["type"], "login", "{answer}");
    assert_eq!(users(&answer), ["walter", "mary"]);
    assert_eq!(tutorial_view(&walter.recv_json())["user_joined"], "mary");
    let _laura = server.login("laura");
    assert_eq!(
        maria.recv_json(),
        json!({"type": "presence", "room": "lobby", "joined": ["laura"], "left": []})
    );
    walter.recv_json(); // laura joined
    maria.send_json(json!({"type": "login", "username": "maria"}));
    let answer = maria.recv_json();
    assert_eq!(
        tutorial_view(&answer)["active_users"],
        json!(["walter", "maria", "laura"])
    );
    walter.chat("hi");
    assert_eq!(maria.recv_json()["text"], "hi");
}

#[test]
fn a_reconnect_with_since_gets_what_it_missed_then_the_whole_list() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login("walter");
    let mut maria = server.connect();
    login_changes(&mut maria, "maria");
    walter.chat("seen");
    let seen = maria.recv_until(|m| m["type"] == "chat");
    walter.recv_until(|m| m["type"] == "chat");
    let last = seen["id"].as_u64().unwrap();
    maria.vanish();
    walter.recv_until(|m| m["type"] == "disconnect");
    walter.chat("missed");
    walter.recv_until(|m| m["type"] == "chat");
    let _laura = server.login("laura");
    let mut back = server.connect();
    back.send_json(
        json!({"type": "login", "username": "maria", "since": last, "presence": "changes"}),
    );
    let history = back.recv_json();
    assert_eq!(history["type"], "history", "{history}");
    let texts = texts(&history);
    assert_eq!(texts, ["missed"]);
    let answer = back.recv_json();
    assert_eq!(answer["type"], "login");
    assert_eq!(users(&answer), ["walter", "laura", "maria"]);
    walter.chat("after");
    assert_eq!(back.recv_json()["text"], "after");
}

#[test]
fn clients_that_do_not_ask_keep_the_tutorial_messages_beside_those_that_do() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login("walter");
    let mut maria = server.connect();
    login_changes(&mut maria, "maria");
    assert_eq!(
        tutorial_view(&walter.recv_json()),
        json!({"type": "login", "user_joined": "maria", "active_users": ["walter", "maria"]})
    );
    let laura = server.login("laura");
    assert_eq!(
        tutorial_view(&walter.recv_json()),
        json!({"type": "login", "user_joined": "laura", "active_users": ["walter", "maria", "laura"]})
    );
    laura.vanish();
    assert_eq!(
        tutorial_view(&walter.recv_json()),
        json!({"type": "disconnect", "user_left": "laura", "active_users": ["walter", "maria"]})
    );
    walter.chat("hi");
    assert_eq!(walter.recv_json()["text"], "hi");
    // maria heard laura come and go as presence, then the chat.
    let mut heard = Vec::new();
    loop {
        let message = maria.recv_json();
        if message["type"] == "chat" {
            assert_eq!(message["text"], "hi");
            break;
        }
        heard.push(message);
    }
    let mut list = vec!["walter".to_string(), "maria".to_string()];
    for message in &heard {
        apply(&mut list, message);
    }
    assert_eq!(list, ["walter", "maria"]);
    assert!(!heard.is_empty(), "laura's coming was not heard");
}

#[test]
fn an_unknown_presence_value_is_refused() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send_json(json!({"type": "login", "username": "walter", "presence": "deltas"}));
    let error = client.expect_error();
    assert_eq!(error["error"], "invalid presence");
    assert_eq!(error["request"], "login");
    // The socket stays usable.
    client.login("walter");
}

#[test]
fn with_redis_a_node_s_changes_clients_hear_the_other_node_s_users() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(2, &[]);
    let mut maria = Client::connect_to(nodes[0].addr, "/r/lecture");
    let answer = login_changes(&mut maria, "maria");
    assert_eq!(users(&answer), ["maria"]);
    let mut list = vec!["maria".to_string()];
    let mut walter = Client::connect_to(nodes[1].addr, "/r/lecture");
    walter.login("walter");
    follow_until(&mut maria, &mut list, &["maria", "walter"]);
    let mut laura = Client::connect_to(nodes[1].addr, "/r/lecture");
    let answer = login_changes(&mut laura, "laura");
    assert_eq!(users(&answer), ["maria", "walter", "laura"]);
    follow_until(&mut maria, &mut list, &["maria", "walter", "laura"]);
    walter.chat("from node 2");
    let chat = maria.recv_json();
    assert_eq!(chat["text"], "from node 2", "{chat}");
    // A tutorial client on node 1 still gets whole lists.
    walter.send_json(json!({"type": "disconnect", "username": "walter"}));
    follow_until(&mut maria, &mut list, &["maria", "laura"]);
    let mut list = vec![
        "maria".to_string(),
        "walter".to_string(),
        "laura".to_string(),
    ];
    let deadline = Instant::now() + WAIT;
    while list != ["maria", "laura"] && Instant::now() < deadline {
        let message = laura.recv_json();
        if message["type"] == "presence" {
            apply(&mut list, &message);
        }
    }
    assert_eq!(list, ["maria", "laura"]);
}
