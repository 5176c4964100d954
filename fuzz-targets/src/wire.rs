//! Wire formats between tasks and on the network.

use std::collections::BTreeMap;

use dsoftbusd::binding::Binding;
use dsoftbusd::wire::{self, AppMessage, FrameReader, Hello, HelloReply, MAX_FRAME};
use ipc::{AuditFilter, Frame, FrameKind, Operation};
use service_api::logd::QueryReply;
use service_api::netstackd::{self, Accepted, Status};
use service_api::{
    dsoftbusd as dsoftbusd_api, rngd as rngd_api, split_reply, statefs as statefs_api,
};

/// The IPC frame: accepted frames re-encode to the same bytes, and `peek` agrees.
pub fn ipc_frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let encoded = frame.encode().expect("an accepted frame encodes");
    assert_eq!(&encoded[..], data, "canonical frame");
    let (kind, code) = Frame::peek(data).expect("peek accepts what decode accepts");
    assert_eq!((kind, code), (frame.kind, frame.code));
    if kind == FrameKind::Request {
        let _ = Operation::from_code(code);
    }
}

/// logd's filter and reply: canonical.
pub fn audit_filter(data: &[u8]) {
    if let Ok(filter) = AuditFilter::decode(data) {
        assert_eq!(&filter.encode()[..], data, "canonical filter");
    }
    if let Some(reply) = QueryReply::decode(data) {
        assert_eq!(&reply.encode()[..], data, "canonical reply");
    }
}

/// Every request payload, under the operation the first two bytes pick: accepted
/// payloads re-encode to the same bytes.
pub fn service_requests(data: &[u8]) {
    let Some((selector, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let all = Operation::ALL;
    let operation = all[usize::from(u16::from_le_bytes(*selector)) % all.len()];
    if let Ok(request) = netstackd::Request::decode(operation, payload) {
        assert_eq!(request.encode(), (operation, payload.to_vec()), "netstackd");
    }
    if let Ok(n) = rngd_api::decode_request(payload) {
        assert_eq!(
            rngd_api::encode_request(u16::try_from(n).expect("bounded")),
            payload,
            "rngd"
        );
    }
    if let Ok((id, record)) = statefs_api::decode_request(payload) {
        assert_eq!([&id.to_le_bytes()[..], record].concat(), payload, "statefs");
    }
    if let Ok((session, message)) = dsoftbusd_api::decode_transport(payload) {
        assert_eq!(
            dsoftbusd_api::encode_transport(session, message),
            payload,
            "TRANSPORT"
        );
    }
    if let Ok((remote, key)) = dsoftbusd_api::decode_connect(payload) {
        assert_eq!(
            dsoftbusd_api::encode_connect(remote, &key),
            payload,
            "CONNECT"
        );
    }
}

/// Reply payloads and reply frames.
pub fn service_replies(data: &[u8]) {
    if let Ok(accepted) = Accepted::decode(data) {
        assert_eq!(accepted.encode(), data);
    }
    if let Ok(status) = Status::decode(data) {
        assert_eq!(status.encode(), data);
    }
    if let Ok(waited) = netstackd::decode_ready(data) {
        assert_eq!(
            netstackd::encode_ready(waited.generation, &waited.ready),
            data
        );
    }
    if let Ok(connected) = dsoftbusd_api::Connected::decode(data) {
        assert_eq!(connected.encode(), data);
    }
    let _ = split_reply(data);
}

/// dsoftbusd's TCP framing: whatever the bytes and however they are cut, the reader
/// never holds more than one frame, every frame it yields is within the limit, and the
/// bytes it consumed are exactly the frames it yielded (with their length fields) and
/// what it holds. Hellos and plaintexts are canonical.
pub fn tcp_framing(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut % 32) + 1;
    let mut reader = FrameReader::default();
    let mut consumed = 0;
    let mut yielded = 0;
    'feed: for chunk in stream.chunks(piece) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match reader.push(rest) {
                Ok((frame, used)) => {
                    assert!(used <= rest.len());
                    consumed += used;
                    rest = &rest[used..];
                    if let Some(frame) = frame {
                        assert!(!frame.is_empty() && frame.len() <= MAX_FRAME);
                        yielded += 2 + frame.len();
                        tcp_messages(&frame);
                    }
                    assert!(reader.pending() <= 2 + MAX_FRAME);
                }
                Err(_) => break 'feed,
            }
        }
    }
    assert!(consumed <= stream.len());
    assert!(yielded <= consumed);
    tcp_messages(stream);
}

fn tcp_messages(body: &[u8]) {
    if let Ok(hello) = Hello::decode(body) {
        assert_eq!(hello.encode(), body, "canonical hello");
    }
    if let Ok(reply) = HelloReply::decode(body) {
        assert_eq!(reply.encode(), body, "canonical hello reply");
    }
    if let Some(message) = AppMessage::parse(body) {
        assert_eq!(message.encode(), body, "canonical plaintext");
    }
    if body.len() <= MAX_FRAME {
        let framed = wire::frame(body);
        assert_eq!(framed.len(), body.len() + 2);
    }
}

/// The identity binding: canonical.
pub fn binding(data: &[u8]) {
    if let Ok(binding) = Binding::decode(data) {
        assert_eq!(binding.encode(), data);
    }
}

/// The marker contract: any text parses or is refused with an error; a contract that
/// parses gives every phase's expectation, and a ladder takes any console lines.
pub fn markers_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (contract_text, lines) = text.split_once("\n---\n").unwrap_or((text, ""));
    let Ok(contract) = marker_contract::Contract::parse(contract_text) else {
        return;
    };
    for phase in contract.phase_names() {
        if let Ok(expectation) = contract.expectation(phase, None) {
            let mut ladder = marker_contract::Ladder::new(expectation, BTreeMap::new());
            for line in lines.lines().take(64) {
                let _ = ladder.feed(line);
            }
            let _ = ladder.explain("the end of the input");
        }
    }
}
