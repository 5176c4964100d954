//! The dsoftbus checks. The selftest is the remote node: it has its own device
//! identity (a key made here from rngd entropy, never keystored's), it provisions that
//! identity into dsoftbusd's allowlist, and it initiates Noise XK sessions. It checks
//! dsoftbusd's binding against the device key keystored publishes, exchanges pings as
//! AEAD transport messages, and mounts each attack; after every rejection a good
//! session must still complete.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dsoftbusd::binding::Binding;
use dsoftbusd::client::{ConnectError, Node, Session, Stage, connect};
use ipc::frame::FrameError;
use ipc::{Action, AuditFilter, Endpoint, IpcError, Operation, ServiceId, Verdict};
use noise_xk::NoiseError;
use provider_api::{
    HashBackend, Provider, SecretBytes, Seed, SigningKey, VerifyingKey, X25519PublicKey,
    X25519SecretKey,
};
use service_api::dsoftbusd::{self as api, MAX_MESSAGE};
use service_api::{ClientError, ServiceError, keystored, logd, rngd};

use crate::Checks;

/// Device keys provider-api's verification rule refuses: the public keys of
/// speccheck ("Taming the many EdDSAs") cases 0 (small order) and 3 (mixed order).
const WEAK_DEVICE_KEYS: [(&str, [u8; 32]); 2] = [
    (
        "small-order",
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0xfa,
        ],
    ),
    (
        "mixed-order",
        [
            0xcd, 0xb2, 0x67, 0xce, 0x40, 0xc5, 0xcd, 0x45, 0x30, 0x6f, 0xa5, 0xd2, 0xf2, 0x97,
            0x31, 0x45, 0x93, 0x87, 0xdb, 0xf9, 0xeb, 0x93, 0x3b, 0x7b, 0xd5, 0xae, 0xd9, 0xa7,
            0x65, 0xb8, 0x8d, 0x4d,
        ],
    ),
];

/// Everything the sessions need, made once.
struct Setup<P: Provider> {
    node: Node<P>,
    identity_seed: Seed,
    responder: X25519PublicKey,
    trusted: [VerifyingKey<P::Curve>; 1],
}

async fn secret<E: Endpoint>(ep: &E) -> Result<SecretBytes<32>, String> {
    let bytes = rngd::get_entropy(ep, 32)
        .await
        .map_err(|e| format!("GET_ENTROPY: {e}"))?;
    SecretBytes::from_fill(|out: &mut [u8; 32]| {
        out.copy_from_slice(&bytes);
        Ok(())
    })
}

async fn setup<P: Provider, E: Endpoint>(ep: &E) -> Result<Setup<P>, String> {
    let identity_seed = secret(ep).await?;
    let node = Node::<P>::new(&identity_seed, &secret(ep).await?)
        .map_err(|e| format!("node identity: {e}"))?;
    let discovered = api::discover(ep)
        .await
        .map_err(|e| format!("DISCOVER: {e}"))?;
    let device = keystored::get_pubkey(ep)
        .await
        .map_err(|e| format!("GET_PUBKEY: {e}"))?;
    if discovered.device_key != device {
        return Err(String::from(
            "dsoftbusd presents a device key that is not keystored's",
        ));
    }
    api::trust(ep, &node.device_key())
        .await
        .map_err(|e| format!("TRUST: {e}"))?;
    let device = VerifyingKey::from_bytes(&device)
        .map_err(|e| format!("keystored's device key is refused: {e}"))?;
    Ok(Setup {
        node,
        identity_seed,
        responder: X25519PublicKey(discovered.noise_static),
        trusted: [device],
    })
}

/// Session ids, and every ephemeral key seen, for the freshness check.
struct Sessions {
    next_id: u32,
    ephemerals: Vec<[u8; 32]>,
}

impl Sessions {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Opens a session of the provisioned node and records its ephemeral keys.
    async fn open<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
    ) -> Result<Session<P::Aead>, ConnectError> {
        let id = self.id();
        let session = connect::<P, H, E>(
            ep,
            &setup.node,
            id,
            &setup.responder,
            &setup.trusted,
            |_, _| {},
        )
        .await?;
        self.record(&session);
        Ok(session)
    }

    /// A good session with a ping on it.
    async fn good<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
    ) -> Result<(), String> {
        let mut session = self
            .open::<P, H, E>(ep, setup)
            .await
            .map_err(|e| format!("a good session after the rejection failed: {e:?}"))?;
        let pong = session
            .ping(ep, b"after")
            .await
            .map_err(|e| format!("ping after the rejection: {e:?}"))?;
        if pong != b"after" {
            return Err(String::from("the ping after the rejection came back wrong"));
        }
        Ok(())
    }

    /// Connects `node`, which believes in `responder`, with `tamper` on the handshake;
    /// the attempt must end in `expected`, and a good session must follow.
    #[allow(clippy::too_many_arguments)]
    async fn refused_then_good<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
        node: &Node<P>,
        responder: &X25519PublicKey,
        tamper: impl FnMut(Stage, &mut Vec<u8>),
        expected: ConnectError,
        what: &str,
    ) -> Result<(), String> {
        let id = self.id();
        let outcome = connect::<P, H, E>(ep, node, id, responder, &setup.trusted, tamper)
            .await
            .map(|_| ());
        expect_refusal(outcome, expected, what)?;
        self.good::<P, H, E>(ep, setup).await
    }

    fn record<A: provider_api::AeadBackend>(&mut self, session: &Session<A>) {
        self.ephemerals.push(session.initiator_ephemeral);
        self.ephemerals.push(session.responder_ephemeral);
    }
}

fn expect_refusal(
    outcome: Result<(), ConnectError>,
    expected: ConnectError,
    what: &str,
) -> Result<(), String> {
    match outcome {
        Err(error) if error == expected => Ok(()),
        other => Err(format!("{what}: expected {expected:?}, got {other:?}")),
    }
}

fn flip_last_bit(message: &mut [u8]) {
    if let Some(last) = message.last_mut() {
        *last ^= 1;
    }
}

pub(crate) async fn run<P: Provider, H: HashBackend, E: Endpoint>(checks: &mut Checks<'_, E>) {
    let ep = checks.ep;
    let setup = match setup::<P, E>(ep).await {
        Ok(setup) => setup,
        Err(why) => {
            checks.check(markers::SELFTEST_DSOFTBUS_OS_CONNECT, Err(why));
            return;
        }
    };
    let mut sessions = Sessions {
        next_id: 0,
        ephemerals: Vec::new(),
    };
    let refused = |error: ServiceError| ConnectError::Refused(ClientError::Service(error));

    // Mutual authentication: dsoftbusd's binding checked here, ours by dsoftbusd.
    let first = sessions.open::<P, H, E>(ep, &setup).await;
    let mut session = match first {
        Ok(session) => {
            checks.check(markers::SELFTEST_DSOFTBUS_OS_CONNECT, Ok(()));
            session
        }
        Err(error) => {
            checks.check(
                markers::SELFTEST_DSOFTBUS_OS_CONNECT,
                Err(format!("connect: {error:?}")),
            );
            return;
        }
    };

    // A ping and its pong, as AEAD transport messages: the data (fresh from rngd) is
    // not in the ciphertext, and the pong decrypts under the session's keys.
    let data = rngd::get_entropy(ep, 16)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let ping = async {
        let sealed = session.seal_ping(&data).map_err(|e| format!("seal: {e}"))?;
        if data.is_empty() || sealed.windows(data.len()).any(|w| w == data.as_slice()) {
            return Err(String::from(
                "the ping's data is visible in the transport message",
            ));
        }
        let answer = session
            .send_raw(ep, &sealed)
            .await
            .map_err(|e| format!("TRANSPORT: {e}"))?;
        match session.open_pong(&answer) {
            Ok(pong) if pong == data => Ok(()),
            Ok(_) => Err(String::from("the pong carries other data")),
            Err(e) => Err(format!("the pong does not decrypt: {e}")),
        }
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_PING, ping);

    // A flipped bit in each handshake message: dsoftbusd refuses messages 1 and 3,
    // this node refuses message 2.
    let mut tampered = Ok(());
    for (stage, expected) in [
        (Stage::Message1, refused(ServiceError::AuthenticationFailed)),
        (
            Stage::Message2,
            ConnectError::Noise(NoiseError::Authentication),
        ),
        (Stage::Message3, refused(ServiceError::AuthenticationFailed)),
    ] {
        let flip = |at: Stage, message: &mut Vec<u8>| {
            if at == stage {
                flip_last_bit(message);
            }
        };
        let what = format!("{stage:?} with a flipped bit");
        let outcome = sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &setup.node,
                &setup.responder,
                flip,
                expected,
                &what,
            )
            .await;
        tampered = tampered.and(outcome);
    }
    checks.check(markers::SELFTEST_DSOFTBUS_TAMPERED_REJECTED, tampered);

    // An initiator that believes in another responder key cannot even start.
    let wrong = async {
        let other = *X25519SecretKey::<P::Curve>::from_entropy(&secret(ep).await?).public_key();
        let expected = refused(ServiceError::AuthenticationFailed);
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &setup.node,
                &other,
                |_, _| {},
                expected,
                "wrong responder key",
            )
            .await
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_WRONG_STATIC_REJECTED, wrong);

    // A well-formed identity that nobody provisioned.
    let unknown = async {
        let stranger =
            Node::<P>::new(&secret(ep).await?, &secret(ep).await?).map_err(|e| format!("{e}"))?;
        let expected = refused(ServiceError::AuthenticationFailed);
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &stranger,
                &setup.responder,
                |_, _| {},
                expected,
                "unknown identity",
            )
            .await
    }
    .await;
    checks.check(
        markers::SELFTEST_DSOFTBUS_UNKNOWN_IDENTITY_REJECTED,
        unknown,
    );

    // Keys the verification rule refuses never join the allowlist: a small-order key
    // (it would "verify" signatures nobody made) and a mixed-order one (speccheck
    // cases 0 and 3), each refused by TRUST with its own error and the reason.
    let weak = async {
        for (what, key) in WEAK_DEVICE_KEYS {
            match api::trust(ep, &key).await {
                Err(ClientError::Service(ServiceError::InvalidKey)) => {}
                other => return Err(format!("TRUST of a {what} key got {other:?}")),
            }
            let filter = AuditFilter {
                origin: Some(ServiceId::Dsoftbusd),
                subject: Some(ServiceId::Selftest),
                action: Some(Action::Call {
                    service: ServiceId::Dsoftbusd,
                    code: Operation::DsoftbusdTrust.code(),
                }),
                verdict: Some(Verdict::Rejected),
            };
            match logd::query(ep, &filter).await {
                Ok(reply) if reply.matched > 0 => {}
                other => return Err(format!("no record of the refused {what} key: {other:?}")),
            }
        }
        Ok(())
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_WEAK_KEYS_REFUSED, weak);

    // The trusted device key's valid signature, but over another static key.
    let foreign = async {
        let device =
            SigningKey::<P::Curve>::from_seed(&setup.identity_seed).map_err(|e| format!("{e}"))?;
        let signed_static = X25519SecretKey::<P::Curve>::from_entropy(&secret(ep).await?);
        let binding = Binding::sign(&device, signed_static.public_key());
        let forged =
            Node::<P>::from_parts(X25519SecretKey::from_entropy(&secret(ep).await?), binding);
        let expected = refused(ServiceError::AuthenticationFailed);
        let what = "signature over another key";
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &forged,
                &setup.responder,
                |_, _| {},
                expected,
                what,
            )
            .await
    }
    .await;
    checks.check(
        markers::SELFTEST_DSOFTBUS_FOREIGN_SIGNATURE_REJECTED,
        foreign,
    );

    // Truncated and oversized messages: dsoftbusd's bound, then the kernel's, which
    // measures the whole frame (header, session id, message).
    let over_frame = 5000;
    let too_long = FrameError::TooLong {
        len: ipc::frame::HEADER_LEN + 4 + over_frame,
    };
    let malformed = async {
        for (what, stage, resize, expected) in [
            (
                "a truncated first message",
                Stage::Message1,
                20,
                refused(ServiceError::MalformedRequest),
            ),
            (
                "a truncated third message",
                Stage::Message3,
                40,
                refused(ServiceError::MalformedRequest),
            ),
            (
                "a first message over 1 KiB",
                Stage::Message1,
                MAX_MESSAGE + 1,
                refused(ServiceError::RequestTooLarge),
            ),
            (
                "a message over the IPC frame",
                Stage::Message1,
                over_frame,
                ConnectError::Refused(ClientError::Ipc(IpcError::MalformedFrame(too_long))),
            ),
        ] {
            let resize_at = |at: Stage, message: &mut Vec<u8>| {
                if at == stage {
                    message.resize(resize, 0);
                }
            };
            sessions
                .refused_then_good::<P, H, E>(
                    ep,
                    &setup,
                    &setup.node,
                    &setup.responder,
                    resize_at,
                    expected,
                    what,
                )
                .await?;
        }
        Ok(())
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_MALFORMED_REJECTED, malformed);

    // A ping sent twice on its session: the second is refused, and the session
    // goes on. (A session of its own: older ones may have been evicted by now.)
    let replay = async {
        let mut session = sessions
            .open::<P, H, E>(ep, &setup)
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let sealed = session
            .seal_ping(b"once")
            .map_err(|e| format!("seal: {e}"))?;
        let answer = session
            .send_raw(ep, &sealed)
            .await
            .map_err(|e| format!("the first ping: {e}"))?;
        session
            .open_pong(&answer)
            .map_err(|e| format!("the first pong: {e}"))?;
        match session.send_raw(ep, &sealed).await {
            Err(ClientError::Service(ServiceError::AuthenticationFailed)) => {}
            other => return Err(format!("the replayed ping got {other:?}")),
        }
        match session.ping(ep, b"still here").await {
            Ok(pong) if pong == b"still here" => Ok(()),
            other => Err(format!("the session after the replay: {other:?}")),
        }
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_REPLAY_REJECTED, replay);

    // Every session, good or refused after message 2, had fresh ephemeral keys.
    let mut keys = sessions.ephemerals.clone();
    keys.sort_unstable();
    keys.dedup();
    let fresh = if keys.len() == sessions.ephemerals.len() && keys.len() >= 16 {
        Ok(())
    } else {
        Err(format!(
            "{} ephemeral keys, {} distinct",
            sessions.ephemerals.len(),
            keys.len()
        ))
    };
    checks.check(markers::SELFTEST_DSOFTBUS_FRESH_EPHEMERALS, fresh);

    // dsoftbusd recorded each refusal and each authentication.
    let transport = Action::Call {
        service: ServiceId::Dsoftbusd,
        code: Operation::DsoftbusdTransport.code(),
    };
    let mut audit = Ok(());
    for (verdict, at_least) in [(Verdict::Rejected, 9), (Verdict::Allowed, 10)] {
        let filter = AuditFilter {
            origin: Some(ServiceId::Dsoftbusd),
            subject: Some(ServiceId::Selftest),
            action: Some(transport),
            verdict: Some(verdict),
        };
        match logd::query(ep, &filter).await {
            Ok(reply) if reply.matched >= at_least => {}
            Ok(reply) => {
                audit = Err(format!(
                    "{} {verdict:?} records of dsoftbusd, want {at_least}",
                    reply.matched
                ))
            }
            Err(error) => audit = Err(format!("logd query failed: {error}")),
        }
    }
    checks.check(markers::SELFTEST_DSOFTBUS_AUDIT_RECORDS, audit);
}
