#!/usr/bin/env bash
# System packages for the DICOM/PACS tests: Orthanc (a real PACS on 127.0.0.1) and dicom3tools
# (dciodvfy). Sourced or run by .ci/run. Never fails the build: without them the tests that need
# them skip with a message.
_cxr_install_system() {
    if command -v Orthanc >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1; then
        echo "install_system: orthanc and dicom3tools already installed"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_system: apt-get not available; Orthanc/dciodvfy tests will be skipped"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
            echo "install_system: not root and no sudo; Orthanc/dciodvfy tests will be skipped"
            return 0
        fi
    fi
    if $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc dicom3tools >/dev/null; then
        echo "install_system: installed orthanc and dicom3tools"
    else
        echo "install_system: apt-get install orthanc dicom3tools failed; those tests will be skipped"
    fi
    return 0
}
_cxr_install_system
