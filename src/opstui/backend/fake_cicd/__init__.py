"""FAKE CI/CD servers (protocol fakes) for tests and the demo: FakeJenkins, FakeGitHub,
FakeGitLab. They listen on 127.0.0.1 only and are not the real services."""

from opstui.backend.fake_cicd.common import FakeServer, Faults
from opstui.backend.fake_cicd.github import FakeGitHub
from opstui.backend.fake_cicd.gitlab import FakeGitLab
from opstui.backend.fake_cicd.jenkins import FakeJenkins

__all__ = ["FakeGitHub", "FakeGitLab", "FakeJenkins", "FakeServer", "Faults"]
