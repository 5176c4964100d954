//! The console: the device tree's 16550 UART through the `uart_16550` crate, or the
//! SBI console until the UART is known (and if it is missing).

use core::cell::RefCell;
use core::fmt::{self, Write};
use core::ptr::NonNull;

use critical_section::Mutex;
use uart_16550::Uart16550;
use uart_16550::backend::MmioBackend;

/// The UART, owned by the console.
struct Uart(Uart16550<MmioBackend>);

// SAFETY: there is one hart, and every access goes through the critical-section mutex
// below. The one interrupt handler that prints (the watchdog's) cannot run inside a
// critical section, which keeps interrupts off, so it never finds the console borrowed.
unsafe impl Send for Uart {}

static UART: Mutex<RefCell<Option<Uart>>> = Mutex::new(RefCell::new(None));

/// How many times a byte is offered to a full transmit FIFO before it is dropped:
/// a wedged UART must not hang the kernel.
const SEND_ATTEMPTS: usize = 100_000;

/// Takes over the UART at `base`, if there is one.
pub fn init(base: Option<usize>) {
    let Some(address) = base.and_then(|b| NonNull::new(b as *mut u8)) else {
        return;
    };
    // SAFETY: `address` is the `reg` of the device tree's ns16550a node: eight byte-wide
    // registers (stride 1 on QEMU virt), mapped for the life of the machine, used by
    // nothing else once the console owns it.
    let Ok(mut uart) = (unsafe { Uart16550::new_mmio(address, 1) }) else {
        return;
    };
    if uart.init(uart_16550::Config::default()).is_ok() {
        critical_section::with(|cs| *UART.borrow_ref_mut(cs) = Some(Uart(uart)));
    }
}

struct Sink;

impl Write for Sink {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let sent = critical_section::with(|cs| {
            // try_borrow: a panic while printing must still be able to print.
            let Ok(mut uart) = UART.borrow(cs).try_borrow_mut() else {
                return false;
            };
            let Some(Uart(uart)) = uart.as_mut() else {
                return false;
            };
            for &byte in text.as_bytes() {
                for _ in 0..SEND_ATTEMPTS {
                    if uart.try_send_byte(byte).is_ok() {
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
            true
        });
        if !sent {
            for &byte in text.as_bytes() {
                #[allow(deprecated)]
                sbi_rt::legacy::console_putchar(usize::from(byte));
            }
        }
        Ok(())
    }
}

/// Prints `prefix: message` and a newline.
pub fn line(prefix: &str, message: fmt::Arguments<'_>) {
    let _ = writeln!(Sink, "{prefix}: {message}");
}
