//! Every fuzz target on stable: its checked-in corpus (`fuzz/corpus/<target>/`, every
//! input libFuzzer kept, crashes included once fixed), then a fixed number of inputs
//! made here from a seeded generator (random bytes, and corpus inputs with bytes
//! flipped, cut and repeated), so `cargo xtask test` exercises each property without
//! libFuzzer.

use std::path::PathBuf;

/// Generated inputs per target.
const GENERATED: usize = 300;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect();
    inputs.sort();
    inputs.into_iter().map(|(_, bytes)| bytes).collect()
}

fn mutate(rng: &mut SplitMix, seed: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    match rng.below(4) {
        0 => {
            let len = rng.below(600);
            input = (0..len).map(|_| rng.next() as u8).collect();
        }
        1 if !input.is_empty() => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
        }
        2 if !input.is_empty() => {
            let cut = rng.below(input.len());
            input.truncate(cut);
        }
        _ => {
            let extra: Vec<u8> = input.iter().copied().take(rng.below(64)).collect();
            input.extend(extra);
            input.push(rng.next() as u8);
        }
    }
    input
}

#[test]
fn every_target_holds_on_its_corpus_and_generated_inputs() {
    let mut report = Vec::new();
    for target in fuzz_targets::TARGETS {
        let mut inputs = fuzz_targets::seeds(target.name);
        inputs.extend(corpus(target.name));
        for input in &inputs {
            (target.run)(input);
        }
        let mut rng = SplitMix(target.name.len() as u64 * 0x1234_5678);
        for i in 0..GENERATED {
            let seed: &[u8] = if inputs.is_empty() {
                &[]
            } else {
                &inputs[i % inputs.len()]
            };
            (target.run)(&mutate(&mut rng, seed));
        }
        report.push(format!("{} ({} corpus)", target.name, inputs.len()));
    }
    eprintln!("fuzz targets replayed: {}", report.join(", "));
}
