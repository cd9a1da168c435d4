<#
.SYNOPSIS
Install cxrdesk on Windows from this offline bundle (built with installer/build.sh --platform win_amd64).

.DESCRIPTION
Creates a Python virtual environment at -Prefix (launcher: PREFIX\Scripts\cxrdesk.exe), installs
every wheel from wheelhouse\ with pip --no-index (nothing is downloaded), copies the bundled model
to PREFIX\share\cxrdesk\models\cxrdesk-cxr256 (where cxrdesk looks by default) and adds a Start
menu shortcut. Not exercised in this repository's CI (no Windows machine); install.sh is.

.EXAMPLE
powershell -ExecutionPolicy Bypass -File install.ps1 -Prefix "$env:LOCALAPPDATA\cxrdesk"
#>
param(
    [Parameter(Mandatory = $true)][string]$Prefix,
    [string]$Python = "",
    [switch]$NoShortcut,
    [switch]$AllUsers,
    [switch]$Force,
    [switch]$NoVerify
)
$ErrorActionPreference = "Stop"
function Fail($msg) { Write-Error "install.ps1: error: $msg"; exit 2 }
function Note($msg) { Write-Host "install.ps1: $msg" }

$Bundle = Split-Path -Parent $MyInvocation.MyCommand.Path
$Wheelhouse = Join-Path $Bundle "wheelhouse"
if (-not (Test-Path $Wheelhouse -PathType Container)) {
    Fail "no wheelhouse at $Wheelhouse. This script installs from an offline bundle: run it from the folder made by 'installer/build.sh OUTDIR --platform win_amd64' on a machine with internet."
}
if (-not (Get-ChildItem $Wheelhouse -Filter "cxrdesk-*.whl")) { Fail "the wheelhouse has no cxrdesk wheel: the bundle is incomplete" }
$Requirements = Join-Path $Bundle "requirements.txt"
if (-not (Test-Path $Requirements)) { Fail "requirements.txt is missing: the bundle is incomplete" }

$Info = @{}
if (Test-Path (Join-Path $Bundle "bundle.info")) {
    foreach ($line in Get-Content (Join-Path $Bundle "bundle.info")) {
        $k, $v = $line -split "=", 2
        if ($k) { $Info[$k] = $v }
    }
}
if ($Info["PLATFORM"] -and $Info["PLATFORM"] -notlike "win*") {
    Fail "this bundle was built for $($Info['PLATFORM']), not Windows (rebuild with --platform win_amd64)"
}
$WantPy = $Info["PYTHON"]

if (-not $NoVerify -and (Test-Path (Join-Path $Bundle "SHA256SUMS"))) {
    Note "checking the bundle's files (SHA256SUMS)"
    foreach ($line in Get-Content (Join-Path $Bundle "SHA256SUMS")) {
        if (-not $line) { continue }
        $hash, $rel = $line -split "\s+\*?", 2
        $path = Join-Path $Bundle ($rel -replace "^\./", "")
        if (-not (Test-Path $path)) { Fail "missing file $rel (copy the bundle again; -NoVerify skips this check)" }
        if ((Get-FileHash -Algorithm SHA256 $path).Hash.ToLower() -ne $hash.ToLower()) {
            Fail "damaged file $rel (copy the bundle again; -NoVerify skips this check)"
        }
    }
}

# Python: -Python, else the py launcher for the bundle's version, else python on the PATH.
$PyCmd = @()
if ($Python) { $PyCmd = @($Python) }
elseif ($WantPy -and (Get-Command py -ErrorAction SilentlyContinue)) { $PyCmd = @("py", "-$WantPy") }
else { $PyCmd = @("python") }
$PyExe = $PyCmd[0]; $PyArgs = @($PyCmd | Select-Object -Skip 1)
$GotPy = & $PyExe @PyArgs -c "import sys; print('%d.%d' % sys.version_info[:2])"
if ($LASTEXITCODE -ne 0 -or -not $GotPy) { Fail "no Python $WantPy found (install it from python.org, or pass -Python PATH)" }
if ($WantPy -and $GotPy.Trim() -ne $WantPy) { Fail "Python $GotPy found but this bundle's wheels are for Python $WantPy (pass -Python PATH)" }

New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
$Prefix = (Resolve-Path $Prefix).Path
$Mark = Join-Path $Prefix ".cxrdesk-install"
if ((Get-ChildItem -Force $Prefix | Measure-Object).Count -gt 0 -and -not (Test-Path $Mark) -and -not $Force) {
    Fail "$Prefix is not empty and holds no earlier cxrdesk install; choose a new folder (or -Force)"
}
$t0 = Get-Date

# Only this bundle's wheelhouse; none of this machine's pip configuration; no cache.
foreach ($v in "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV", "PYTHONPATH", "PYTHONHOME") {
    Remove-Item "Env:$v" -ErrorAction SilentlyContinue
}
$env:PIP_CONFIG_FILE = "NUL"
$env:PIP_DISABLE_PIP_VERSION_CHECK = "1"
$env:PIP_NO_INPUT = "1"

if (Test-Path $Mark) { Note "replacing the earlier install in $Prefix"; & $PyExe @PyArgs -m venv --clear $Prefix }
else { Note "creating the environment $Prefix (Python $GotPy)"; & $PyExe @PyArgs -m venv $Prefix }
if ($LASTEXITCODE -ne 0) { Fail "could not create the virtual environment" }
Set-Content -Path $Mark -Value "cxrdesk $($Info['CXRDESK_VERSION']) installed from $Bundle on $(Get-Date -Format o)"

$VenvPy = Join-Path $Prefix "Scripts\python.exe"
Note "installing the wheels (no network)"
& $VenvPy -m pip install -q --no-index --find-links $Wheelhouse --no-deps --require-hashes --no-cache-dir -r $Requirements
if ($LASTEXITCODE -ne 0) { Fail "pip could not install the wheelhouse (see above)" }
$Exe = Join-Path $Prefix "Scripts\cxrdesk.exe"
if (-not (Test-Path $Exe)) { Fail "the install produced no $Exe" }

$Models = Join-Path $Prefix "share\cxrdesk\models"
$BundledModel = Join-Path $Bundle "model\cxrdesk-cxr256"
if (Test-Path (Join-Path $BundledModel "model_index.json")) {
    New-Item -ItemType Directory -Force -Path $Models | Out-Null
    $Dest = Join-Path $Models "cxrdesk-cxr256"
    if (Test-Path $Dest) { Remove-Item -Recurse -Force $Dest }
    Copy-Item -Recurse $BundledModel $Dest
    Note "model installed in $Dest"
} else {
    Write-Warning "this bundle has no model: use 'cxrdesk --model DIR', set CXRDESK_MODEL, or copy a model folder to $Models\cxrdesk-cxr256"
}

$Share = Join-Path $Prefix "share\cxrdesk"
New-Item -ItemType Directory -Force -Path $Share | Out-Null
$Icon = Join-Path $Bundle "share\cxrdesk.ico"
if (Test-Path $Icon) { Copy-Item $Icon (Join-Path $Share "cxrdesk.ico"); $Icon = Join-Path $Share "cxrdesk.ico" } else { $Icon = $null }

if (-not $NoShortcut) {
    $Programs = if ($AllUsers) { [Environment]::GetFolderPath("CommonPrograms") } else { [Environment]::GetFolderPath("Programs") }
    $Lnk = Join-Path $Programs "cxrdesk.lnk"
    $Shell = New-Object -ComObject WScript.Shell
    $Sc = $Shell.CreateShortcut($Lnk)
    $Sc.TargetPath = Join-Path $Prefix "Scripts\pythonw.exe"   # no console window for the GUI
    $Sc.Arguments = "-m cxrdesk gui"
    $Sc.WorkingDirectory = [Environment]::GetFolderPath("MyDocuments")
    $Sc.Description = "Synthetic chest X-rays for teaching. Not for diagnosis."
    if ($Icon) { $Sc.IconLocation = "$Icon,0" }
    $Sc.Save()
    Set-Content -Path (Join-Path $Prefix ".cxrdesk-links") -Value $Lnk
    Note "Start menu shortcut: $Lnk"
}

$Version = & $Exe --version
if ($LASTEXITCODE -ne 0) { Fail "the installed cxrdesk does not start: $Version" }
$secs = [int]((Get-Date) - $t0).TotalSeconds
Note "$Version installed in $Prefix in $secs s"
Note "command line: `"$Exe`" generate `"Normal chest radiograph`" -o x.png"
