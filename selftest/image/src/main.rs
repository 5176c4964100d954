//! The bootable riscv64 image for one provider combination.
//!
//! Tasks: logd, rngd, statefs, keystored (sealing with the image's AEAD and BLAKE2s),
//! netstackd (TCP/IPv4 on virtio-net and loopback), dsoftbusd (Noise `..._BLAKE2s`,
//! over TCP), and the selftest, whose outcome decides the
//! shutdown status.
//!
//! Built by `cargo xtask test-os` (or `run`) with `--no-default-features`, one
//! `sig-*` and one `aead-*` feature, and `net`. The kernel prints the combination in its banner
//! marker; the harness checks it is the one it asked for. On the host this binary only
//! says how to build it.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod image {
    extern crate alloc;

    use alloc::format;
    use alloc::vec::Vec;

    use ipc::{Endpoint, ServiceId};
    use kernel::{MainOutcome, MainVerdict};
    use provider_select::{Selected, SelectedHash as Hash};

    #[riscv_rt::entry]
    fn main(hart_id: usize, device_tree: usize) -> ! {
        let provider = provider_select::selected_name();
        kernel::boot(hart_id, device_tree, provider, |kernel, boot| {
            if provider_select::AMBIGUOUS {
                let compiled: Vec<&str> = provider_select::compiled_in().collect();
                let line = format!(
                    "more than one backend per axis compiled in ({}); using {provider}",
                    compiled.join(", ")
                );
                kernel::console_line("KERNEL", &line);
            }
            let services = [
                kernel.spawn(ServiceId::Logd, |ep| logd::run(ep, logd::DEFAULT_LIMITS)),
                kernel.spawn(ServiceId::Rngd, rngd::run),
                kernel.spawn(ServiceId::Statefs, statefs::run),
                kernel.spawn(ServiceId::Keystored, |ep| {
                    keystored::run::<Selected, Hash, _>(ep, kernel_core::config::PURPOSES)
                }),
                #[cfg(feature = "net")]
                kernel.spawn(ServiceId::Netstackd, |ep| netstackd::run(ep, boot.bootargs)),
                kernel.spawn(ServiceId::Dsoftbusd, dsoftbusd::run::<Selected, Hash, _>),
            ];
            let verdict = MainVerdict::default();
            let main = verdict.clone();
            // `-append bench`: after the ladder, count instructions per operation.
            let bench = boot.bootargs.split_whitespace().any(|arg| arg == "bench");
            // `dsoftbus.peer=... dsoftbus.peer_key=...`, `serve`: after the ladder,
            // sessions with devices outside the image.
            let plan = selftest::remote::Plan::from_bootargs(boot.bootargs);
            let selftest = kernel.spawn(ServiceId::Selftest, move |ep| async move {
                if bench {
                    selftest::guest_bench::computations::<Selected, Hash, _>(
                        &ep,
                        kernel::instructions_retired,
                    );
                }
                let mut outcome = selftest::run::<Selected, Hash, _>(&ep).await;
                let passed = outcome == selftest::Outcome::Passed;
                if bench && passed {
                    selftest::guest_bench::run::<Selected, Hash, _>(
                        &ep,
                        kernel::instructions_retired,
                        kernel::task_instructions,
                    )
                    .await;
                }
                match plan {
                    Ok(plan) if passed => {
                        if let Some((peer, key)) = plan.peer {
                            selftest::remote::connect(&ep, peer, &key).await;
                        }
                        if let Some(seconds) = plan.serve_s {
                            selftest::remote::serve(&ep, seconds).await;
                        }
                        if let Some(rounds) = plan.soak {
                            let heap = || {
                                let h = kernel::heap_stats();
                                selftest::soak::Heap {
                                    in_use: h.in_use,
                                    high_water: h.high_water,
                                    size: h.size,
                                }
                            };
                            if !selftest::soak::run::<Selected, Hash, _>(&ep, rounds, heap).await {
                                outcome = selftest::Outcome::Failed;
                            }
                        }
                        if plan.entropy_fails
                            && !selftest::remote::entropy_fails::<Selected, Hash, _>(&ep).await
                        {
                            outcome = selftest::Outcome::Failed;
                        }
                        if plan.spin {
                            selftest::remote::spin(&ep);
                        }
                    }
                    Ok(_) => {}
                    Err(why) => {
                        ep.console(&format!("FAIL the command line's session plan: {why:?}"));
                        outcome = selftest::Outcome::Failed;
                    }
                }
                main.set(match outcome {
                    selftest::Outcome::Passed => MainOutcome::Passed,
                    selftest::Outcome::FailedClosed => MainOutcome::FailedClosed,
                    selftest::Outcome::Failed => MainOutcome::Failed,
                });
            });
            for refused in services
                .into_iter()
                .chain([selftest])
                .filter_map(Result::err)
            {
                kernel::console_line("KERNEL", &format!("FAIL cannot start a task: {refused}"));
            }
            verdict
        })
    }
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!(
        "os-image is the riscv64 OS image ({}); build and boot it with `cargo xtask run` \
         or `cargo xtask test-os`",
        provider_select::selected_name()
    );
    std::process::exit(2);
}
