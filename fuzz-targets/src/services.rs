//! Services fed any request frame from any sender: afterwards each still answers a
//! well-formed request correctly.

use ipc::policy::{PurposeGrant, SigningPurpose};
use ipc::{DeviceError, Frame, Operation, RawEntropyDevice, ServiceId};
use provider_api::{Bundle, Seed, SigningKey};
use provider_chacha::ChaCha20Poly1305;
use provider_dalek::Dalek;
use provider_hash::Blake2s;
use service_api::rngd as rngd_api;
use state_format::memory::MemoryDisk;

type Provider = Bundle<Dalek, ChaCha20Poly1305>;

/// SplitMix64 as an entropy device: good enough for the health tests, repeatable.
pub struct Mixer(pub u64);

impl RawEntropyDevice for Mixer {
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        for byte in dest.iter_mut() {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *byte = (z ^ (z >> 31)) as u8;
        }
        Ok(dest.len())
    }
}

/// The sender the first byte picks, and the frame that follows.
fn sender_and_frame(data: &[u8]) -> Option<(ServiceId, &[u8])> {
    let (&pick, frame) = data.split_first()?;
    let ids = ServiceId::ALL;
    Some((ids[usize::from(pick) % ids.len()], frame))
}

fn request(operation: Operation, payload: &[u8]) -> Vec<u8> {
    Frame::request(operation, payload)
        .encode()
        .expect("small frames encode")
        .to_vec()
}

/// rngd never closes for a bad request, and then serves 32 bytes.
pub fn rngd_service(data: &[u8]) {
    let Some((sender, frame)) = sender_and_frame(data) else {
        return;
    };
    let mut rngd = rngd::Rngd::start(Ok(Mixer(7)));
    assert!(rngd.status().is_ok());
    let _ = rngd.handle(sender, frame, 0);
    assert!(rngd.status().is_ok(), "a request closed rngd");
    let good = rngd.handle(
        ServiceId::Keystored,
        &request(Operation::RngdGetEntropy, &rngd_api::encode_request(32)),
        0,
    );
    assert_eq!(good.reply.map(|bytes| bytes.len()), Ok(32));
}

/// statefs keeps its store: after any request, the caller's record can be written and
/// read back.
pub fn statefs_service(data: &[u8]) {
    let Some((sender, frame)) = sender_and_frame(data) else {
        return;
    };
    let mut fs = statefs::Statefs::start(Ok(MemoryDisk::new(512)));
    let _ = fs.handle(sender, frame);
    assert!(fs.status().is_ok(), "a request closed statefs");
    let put = [&5u16.to_le_bytes()[..], b"kept"].concat();
    let written = fs.handle(ServiceId::Selftest, &request(Operation::StatefsPut, &put));
    assert_eq!(
        written.reply,
        Ok(Vec::new()),
        "one request cannot fill the store"
    );
    let read = fs.handle(
        ServiceId::Selftest,
        &request(Operation::StatefsGet, &5u16.to_le_bytes()),
    );
    assert_eq!(read.reply, Ok(b"kept".to_vec()));
}

static PURPOSES: [PurposeGrant; 1] = [PurposeGrant {
    caller: ServiceId::Dsoftbusd,
    purpose: SigningPurpose::NoiseStaticBinding,
}];

/// keystored keeps its key: after any request, the public key is served.
pub fn keystored_service(data: &[u8]) {
    let Some((sender, frame)) = sender_and_frame(data) else {
        return;
    };
    let key = SigningKey::<Dalek>::from_seed(&Seed::new([3; 32])).expect("nonzero seed");
    let public = key.verifying_key().to_bytes();
    let mut keystored =
        keystored::Keystored::<Provider, Blake2s, provider_spake2plus::Spake2Plus>::new(
            key, None, &PURPOSES,
        );
    let _ = keystored.handle(sender, frame);
    let answer = keystored.handle(
        ServiceId::Selftest,
        &request(Operation::KeystoredGetPubkey, &[]),
    );
    assert_eq!(answer.reply, Ok(public.to_vec()));
}
