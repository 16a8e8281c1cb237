//! Validation of `[[test]]` entries: the question (user, device, service,
//! 2FA, consent, destination, time) and the expected decision.

use super::raw::RawTest;
use super::validate::Checker;
use super::{Expect, PolicyTest, TestTime};
use edgegate_proto::bundle::{Device, User};
use edgegate_proto::DenyReason;

impl Checker {
    pub(super) fn test(
        &mut self,
        t: &RawTest,
        text: &str,
        users: &[User],
        devices: &[Device],
    ) -> Option<PolicyTest> {
        let what = format!(
            "test {}/{}/{}",
            t.user.get_ref(),
            t.device.get_ref(),
            t.service.get_ref()
        );
        let expect = Expect::parse(t.expect.get_ref())
            .map_err(|e| self.err(&t.expect, format!("{what}: {e}")))
            .ok();
        let Some(device) = devices.iter().find(|d| &d.id == t.device.get_ref()) else {
            self.err(
                &t.device,
                format!("{what}: device {:?} is not defined", t.device.get_ref()),
            );
            return None;
        };
        if expect != Some(Expect::Deny(DenyReason::UnknownUser))
            && !users.iter().any(|u| &u.id == t.user.get_ref())
        {
            self.err(
                &t.user,
                format!(
                    "{what}: user {:?} is not defined (expect deny:unknown-user if meant)",
                    t.user.get_ref()
                ),
            );
        }
        if expect != Some(Expect::Deny(DenyReason::UnknownService))
            && !device.services.iter().any(|s| &s.id == t.service.get_ref())
        {
            self.err(&t.service, format!("{what}: device {:?} has no service {:?} (expect deny:unknown-service if meant)", device.id, t.service.get_ref()));
        }
        let when = self.test_time(&what, t)?;
        let destination = match &t.destination {
            None => None,
            Some(d) => Some(
                d.get_ref()
                    .parse()
                    .map_err(|_| {
                        self.err(
                            d,
                            format!("{what}: destination {:?} must be IP:PORT", d.get_ref()),
                        )
                    })
                    .ok()?,
            ),
        };
        Some(PolicyTest {
            line: super::line_of(text, t.user.span().start),
            user: t.user.get_ref().clone(),
            device: t.device.get_ref().clone(),
            service: t.service.get_ref().clone(),
            expect: expect?,
            mfa: t.mfa,
            consent: t.consent,
            destination,
            when,
        })
    }

    fn test_time(&mut self, what: &str, t: &RawTest) -> Option<TestTime> {
        match (&t.at, &t.after) {
            (Some(at), Some(_)) => {
                self.err(at, format!("{what}: give at or after, not both"));
                None
            }
            (Some(at), None) => crate::duration::parse_time(at.get_ref())
                .map(TestTime::At)
                .map_err(|e| self.err(at, format!("{what}: at: {e}")))
                .ok(),
            (None, Some(after)) => self.duration(what, "after", after).map(TestTime::AfterAuth),
            (None, None) => Some(TestTime::AfterAuth(super::DEFAULT_TEST_AFTER)),
        }
    }
}
