//! The bootable riscv64 test image for one provider combination.
//!
//! The device's services, spawned by the same function as the production image's
//! (`device_image::spawn_services`), and the selftest, whose outcome decides the
//! shutdown status.
//!
//! Built by `cargo xtask test-os` (or `run`) with `--no-default-features`, `net` and
//! one backend per axis (provider-select's features). The kernel prints the
//! combination in its banner marker; the harness checks it is the one it asked for. On the host this binary only
//! says how to build it.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod image {
    extern crate alloc;

    use alloc::format;

    use ipc::{Endpoint, ServiceId};
    use kernel::{MainOutcome, MainVerdict};
    use provider_select::{Selected, SelectedHash as Hash};

    #[riscv_rt::entry]
    fn main(hart_id: usize, device_tree: usize) -> ! {
        let provider = provider_select::selected_name();
        kernel::boot(hart_id, device_tree, provider, |kernel, boot| {
            device_image::announce_backends();
            let program = kernel::process::load_user_program(&boot);
            let services = device_image::spawn_services(kernel, program.clone());
            let verdict = MainVerdict::default();
            let main = verdict.clone();
            // `-append bench`: after the ladder, count instructions per operation.
            let bench = boot.bootargs.split_whitespace().any(|arg| arg == "bench");
            // `dsoftbus.peer=... dsoftbus.peer_key=...`, `serve`: after the ladder,
            // sessions with devices outside the image.
            let plan = selftest::remote::Plan::from_bootargs(boot.bootargs);
            let selftest = kernel.spawn(ServiceId::Selftest, move |ep| async move {
                // With the services: once the device manager has told the disks apart.
                kernel::process::wait_for_disks(&ep).await;
                if bench {
                    selftest::guest_bench::computations::<Selected, Hash, _>(
                        &ep,
                        kernel::instructions_retired,
                    );
                }
                let mut outcome = selftest::run_in_image::<Selected, Hash, _>(&ep).await;
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
            // The isolation phase: the intruder in user mode, from the boot's -initrd.
            let isolation = kernel::isolation::spawn(kernel, program);
            for refused in services
                .iter()
                .chain(selftest.as_ref().err())
                .chain(isolation.as_ref().err())
            {
                device_image::report_refused(refused);
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
