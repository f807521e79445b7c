//! Variables as guests see them: `fermyon:spin/variables@2.0.0` and
//! `spin:variables/variables@3.0.0`, resolved by [`crate::variables`].

use crate::capabilities::bindings::p2::fermyon::spin2_0_0::variables as spin_vars;
use crate::capabilities::bindings::p3::spin::variables::variables as vars3;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use crate::variables::LookupError;
use wasmtime::component::{HasSelf, Linker};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    spin_vars::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    vars3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

// ---- fermyon:spin/variables@2.0.0 ------------------------------------------

impl spin_vars::Host for HostState {
    async fn get(&mut self, name: String) -> WResult<Result<String, spin_vars::Error>> {
        Ok(self
            .app
            .variables
            .get(&self.component.id, &name)
            .map_err(|e| match e {
                LookupError::InvalidName(n) => spin_vars::Error::InvalidName(n),
                LookupError::Undefined(n) => spin_vars::Error::Undefined(format!(
                    "no variable for {n:?}: declare it in [component.{}.variables]",
                    self.component.id
                )),
            }))
    }
}

// ---- spin:variables@3.0.0 ---------------------------------------------------

impl vars3::HostWithStore<HostState> for P3Capabilities {
    async fn get(acc: &Acc, name: String) -> WResult<Result<String, vars3::Error>> {
        acc.with(|mut a| {
            let state = a.get();
            Ok(state
                .app
                .variables
                .get(&state.component.id, &name)
                .map_err(|e| match e {
                    LookupError::InvalidName(n) => vars3::Error::InvalidName(n),
                    LookupError::Undefined(n) => vars3::Error::Undefined(n),
                }))
        })
    }
}

impl vars3::Host for HostState {}
