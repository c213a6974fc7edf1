//! The tokio peer: the chat hub an async Rust server would be, for
//! `make bench` to run beside threadchat on the same loads.
//!
//! The usual shape of a tokio chat: one *hub* task owns who is logged in
//! (no lock, like threadchat's dispatcher) and hears every client's
//! requests over one channel; each client has a *reader* task (its
//! connection's task) and a *writer* task that drains a bounded queue of
//! 256 messages into the socket. A broadcast is encoded once (the
//! message's bytes are reference-counted) and `try_send` into every
//! queue: a full queue means the client does not read, and it is dropped,
//! as threadchat drops a slow consumer.
//!
//! The protocol is the subset the stress tool speaks: `login` (the whole
//! `active_users` list to everyone, as the tutorial does), `chat` (relayed
//! with the sender's name), `disconnect`; no rooms, no history, no limits.
//! Run: tokio-peer --host 127.0.0.1 --port 8083

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Messages one client's writer may have waiting before the client is
/// dropped as too slow.
const QUEUE: usize = 256;

/// How the hub reaches a client: its queue, and the switch that ends its
/// reader and writer when it is dropped as too slow.
#[derive(Clone)]
struct Client {
    queue: mpsc::Sender<Message>,
    kill: watch::Sender<bool>,
}

/// The WebSocket's settings: tungstenite's defaults but for the read
/// buffer, which is sized as threadchat's (`READ_BUFFER_BYTES`): the
/// default 128 KiB is zero-filled at the first read and would make every
/// idle connection cost that much.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(512)
}

/// What a reader tells the hub.
enum Event {
    Joined(u64, Client),
    Text(u64, String),
    Left(u64),
}

#[tokio::main]
async fn main() {
    let mut host = "127.0.0.1".to_string();
    let mut port = "8083".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--host" => host = args.next().expect("--host needs a value"),
            "--port" => port = args.next().expect("--port needs a value"),
            other => panic!("unknown flag {other}"),
        }
    }
    let listener = TcpListener::bind(format!("{host}:{port}"))
        .await
        .expect("cannot listen");
    println!("listening on ws://{}/", listener.local_addr().unwrap());
    let (events, inbox) = mpsc::unbounded_channel();
    tokio::spawn(hub(inbox));
    let mut next_id = 0u64;
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        next_id += 1;
        tokio::spawn(connection(next_id, socket, events.clone()));
    }
}

/// One client: the handshake, its writer task, then reading until it ends.
async fn connection(id: u64, socket: TcpStream, events: mpsc::UnboundedSender<Event>) {
    let _ = socket.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(socket, Some(config())).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (queue, mut outgoing) = mpsc::channel::<Message>(QUEUE);
    let (kill, killed) = watch::channel(false);
    let _ = events.send(Event::Joined(id, Client { queue, kill }));
    let mut writer_killed = killed.clone();
    let writer = tokio::spawn(async move {
        tokio::select! {
            _ = writer_killed.wait_for(|k| *k) => {}
            _ = write_pump(&mut outgoing, &mut sink) => {}
        }
        let _ = sink.close().await;
    });
    let mut reader_killed = killed;
    loop {
        let message = tokio::select! {
            _ = reader_killed.wait_for(|k| *k) => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let _ = events.send(Event::Text(id, text.to_string()));
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    let _ = events.send(Event::Left(id));
    let _ = writer.await;
}

type Sink = futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>;

/// The writer task's loop: drains the queue, one flush per batch.
async fn write_pump(outgoing: &mut mpsc::Receiver<Message>, sink: &mut Sink) {
    while let Some(message) = outgoing.recv().await {
        // Everything already waiting goes out with one flush.
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Ok(message) = outgoing.try_recv() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// A logged-in client, as the hub sees it.
struct User {
    name: String,
    client: Client,
}

/// The hub: owns every client's queue and the logged-in users, in login
/// order.
async fn hub(mut inbox: mpsc::UnboundedReceiver<Event>) {
    let mut queues: HashMap<u64, Client> = HashMap::new();
    let mut users: Vec<(u64, User)> = Vec::new();
    while let Some(event) = inbox.recv().await {
        match event {
            Event::Joined(id, client) => {
                queues.insert(id, client);
            }
            Event::Left(id) => {
                queues.remove(&id);
                leave(&mut users, id);
            }
            Event::Text(id, text) => {
                let Ok(mut message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match message["type"].as_str() {
                    Some("login") => {
                        let name = message["username"].as_str().unwrap_or("").to_string();
                        let Some(client) = queues.get(&id).cloned() else {
                            continue;
                        };
                        match users.iter_mut().find(|(user, _)| *user == id) {
                            Some((_, user)) => user.name = name.clone(),
                            None => users.push((
                                id,
                                User {
                                    name: name.clone(),
                                    client,
                                },
                            )),
                        }
                        let list: Vec<&str> = users.iter().map(|(_, u)| u.name.as_str()).collect();
                        let text =
                            json!({"type": "login", "user_joined": name, "active_users": list});
                        broadcast(&mut users, text.to_string());
                    }
                    Some("chat") => {
                        let Some(name) = users
                            .iter()
                            .find(|(user, _)| *user == id)
                            .map(|(_, u)| u.name.clone())
                        else {
                            continue;
                        };
                        message["username"] = Value::String(name);
                        broadcast(&mut users, message.to_string());
                    }
                    Some("disconnect") => leave(&mut users, id),
                    _ => {}
                }
            }
        }
    }
}

/// One encoding, shared by every queue; a full queue drops its client.
fn broadcast(users: &mut Vec<(u64, User)>, text: String) {
    let message = Message::text(text);
    let mut slow = Vec::new();
    for (id, user) in users.iter() {
        if user.client.queue.try_send(message.clone()).is_err() {
            slow.push(*id);
        }
    }
    for id in slow {
        // Too slow: its reader and writer end, and the socket closes.
        if let Some((_, user)) = users.iter().find(|(user, _)| *user == id) {
            let _ = user.client.kill.send(true);
        }
        leave(users, id);
    }
}

fn leave(users: &mut Vec<(u64, User)>, id: u64) {
    let Some(position) = users.iter().position(|(user, _)| *user == id) else {
        return;
    };
    let (_, user) = users.remove(position);
    let list: Vec<&str> = users.iter().map(|(_, u)| u.name.as_str()).collect();
    let text = json!({"type": "disconnect", "user_left": user.name, "active_users": list});
    broadcast(users, text.to_string());
}
