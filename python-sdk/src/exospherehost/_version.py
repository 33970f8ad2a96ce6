"""The SDK's version, kept in one place."""

VERSION = "0.1.0"
version = VERSION  # the original SDK's name for it (`from exospherehost._version import version`)
