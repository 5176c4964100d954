//! The network configuration of one boot, from the kernel command line.
//!
//! `net.ip=A.B.C.D/N` sets the network device's address and prefix, `net.gw=A.B.C.D`
//! the default gateway (`net.gw=none` for no route beyond the local network). Without
//! them: `10.0.2.15/24` via `10.0.2.2`, what QEMU's user networking expects. Nothing
//! is compiled in but that default.

use core::fmt;
use core::net::Ipv4Addr;

/// The network device's IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The device's address.
    pub address: Ipv4Addr,
    /// The prefix length of its network.
    pub prefix: u8,
    /// The default gateway, inside that network.
    pub gateway: Option<Ipv4Addr>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `net.ip` is not `A.B.C.D/N` with `N` in 1..=30.
    BadAddress,
    /// The address is not a unicast host address (loopback, broadcast, multicast,
    /// unspecified, or the network's own or broadcast address).
    NotAHostAddress,
    /// `net.gw` is not `A.B.C.D` or `none`.
    BadGateway,
    /// The gateway is not inside the device's network.
    GatewayOutsideNetwork,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadAddress => "net.ip is not A.B.C.D/N with N in 1..=30",
            Self::NotAHostAddress => "net.ip is not a unicast host address of its network",
            Self::BadGateway => "net.gw is not A.B.C.D or none",
            Self::GatewayOutsideNetwork => "net.gw is outside the network of net.ip",
        })
    }
}

impl fmt::Display for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)?;
        match self.gateway {
            Some(gateway) => write!(f, " via {gateway}"),
            None => f.write_str(" (no gateway)"),
        }
    }
}

impl NetConfig {
    /// The network mask.
    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is inside the device's network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.address) & self.mask()
    }

    /// Reads `net.ip=` and `net.gw=` from the kernel command line; the default for
    /// what it does not say. The last word of a kind wins.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_bootargs(bootargs: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for word in bootargs.split_whitespace() {
            if let Some(value) = word.strip_prefix("net.ip=") {
                let (address, prefix) = value.split_once('/').ok_or(ConfigError::BadAddress)?;
                config.address = address.parse().map_err(|_| ConfigError::BadAddress)?;
                config.prefix = prefix.parse().map_err(|_| ConfigError::BadAddress)?;
                if !(1..=30).contains(&config.prefix) {
                    return Err(ConfigError::BadAddress);
                }
            } else if let Some(value) = word.strip_prefix("net.gw=") {
                config.gateway = match value {
                    "none" => None,
                    _ => Some(value.parse().map_err(|_| ConfigError::BadGateway)?),
                };
            }
        }
        let host = u32::from(config.address) & !config.mask();
        if config.address.is_loopback()
            || config.address.is_multicast()
            || config.address.is_broadcast()
            || config.address.is_unspecified()
            || host == 0
            || host == !config.mask()
        {
            return Err(ConfigError::NotAHostAddress);
        }
        if let Some(gateway) = config.gateway
            && (!config.contains(gateway) || gateway == config.address)
        {
            return Err(ConfigError::GatewayOutsideNetwork);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn the_default_is_qemu_user_networking_and_bootargs_override_it() {
        assert_eq!(NetConfig::from_bootargs(""), Ok(NetConfig::default()));
        assert_eq!(
            NetConfig::default().to_string(),
            "10.0.2.15/24 via 10.0.2.2"
        );
        let two = NetConfig::from_bootargs("bench net.ip=10.0.3.16/24 net.gw=none").unwrap();
        assert_eq!(two.address, Ipv4Addr::new(10, 0, 3, 16));
        assert_eq!(two.gateway, None);
        assert!(two.contains(Ipv4Addr::new(10, 0, 3, 15)));
        assert!(!two.contains(Ipv4Addr::new(10, 0, 2, 15)));
    }

    #[test]
    fn bad_configurations_are_refused_by_name() {
        for (args, error) in [
            ("net.ip=10.0.2.15", ConfigError::BadAddress),
            ("net.ip=10.0.2/24", ConfigError::BadAddress),
            ("net.ip=10.0.2.15/31", ConfigError::BadAddress),
            ("net.ip=10.0.2.15/0", ConfigError::BadAddress),
            ("net.ip=127.0.0.2/8", ConfigError::NotAHostAddress),
            ("net.ip=10.0.2.0/24", ConfigError::NotAHostAddress),
            ("net.ip=10.0.2.255/24", ConfigError::NotAHostAddress),
            ("net.gw=10.0.2", ConfigError::BadGateway),
            ("net.gw=10.0.3.2", ConfigError::GatewayOutsideNetwork),
            ("net.gw=10.0.2.15", ConfigError::GatewayOutsideNetwork),
        ] {
            assert_eq!(NetConfig::from_bootargs(args), Err(error), "{args}");
        }
    }
}
