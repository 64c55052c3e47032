//! Where a node keeps its data by default: `$XDG_DATA_HOME/distributeai`, else
//! `~/.local/share/distributeai`, as the XDG base directory specification says.

use std::path::PathBuf;

/// The default data directory, or `None` when neither `XDG_DATA_HOME` nor `HOME` is set.
pub fn default_data_dir() -> Option<PathBuf> {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn data_dir_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    let xdg = xdg_data_home.map(PathBuf::from).filter(|p| p.is_absolute());
    xdg.or_else(|| home.map(|h| PathBuf::from(h).join(".local/share")))
        .map(|base| base.join("distributeai"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_first_then_home() {
        assert_eq!(
            data_dir_from(Some("/x".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/distributeai"))
        );
        assert_eq!(
            data_dir_from(Some("relative".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/share/distributeai"))
        );
        assert_eq!(data_dir_from(None, None), None);
    }
}
