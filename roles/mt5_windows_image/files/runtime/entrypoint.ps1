# MT5 Farm: the account container's entrypoint and watchdog (Windows image).
#
# 1. Checks the container's settings and that its secret files exist (by name: this script
#    never reads a secret; write_start_ini.py reads the password and writes the ini).
# 2. Prepares C:\data (the account's volume): the service's state, and the terminal's
#    per-account folders, linked (junctions) from the portable terminal directory.
# 3. With MT5_BACKEND=mt5: writes the start ini and starts terminal64.exe /portable
#    /config:<ini>; then starts the account service (Windows Python, mt5_account_service).
# 4. Watchdog, every WATCHDOG_INTERVAL s: a process that exited is started again at once;
#    /health not 200 for WATCHDOG_GRACE s: no answer restarts the service, a 503 restarts
#    the terminal, and then both if that did not help. The start ini is removed once the
#    service reports the terminal connected (or after INI_KEEP_SECONDS).
# If this script itself dies, the container exits and Docker's restart policy restarts it.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$Runtime = 'C:\mt5farm\runtime'
$Image = Get-Content -Raw -LiteralPath (Join-Path $Runtime 'image.json') | ConvertFrom-Json
$Python = $Image.python
$IniPath = $Image.ini_path
$DataRoot = 'C:\data'

function Write-Log([string]$Message) {
    Write-Output ('{0} mt5farm: {1}' -f (Get-Date -Format 's'), $Message)
}

function Get-Setting([string]$Name, [string]$Default) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ([string]::IsNullOrWhiteSpace($value)) { return $Default }
    return $value.Trim()
}

function Stop-WithError([string]$Message) {
    Write-Log "cannot start: $Message"
    exit 2
}

$Backend = Get-Setting 'MT5_BACKEND' 'mt5'
$SecretsDir = Get-Setting 'MT5_SECRETS_DIR' 'C:\secrets'
$Port = Get-Setting 'SERVICE_PORT' '8000'
$Grace = [int](Get-Setting 'WATCHDOG_GRACE' ([string]$Image.watchdog_grace))
$Interval = [int](Get-Setting 'WATCHDOG_INTERVAL' ([string]$Image.watchdog_interval))
$IniKeep = [int](Get-Setting 'INI_KEEP_SECONDS' '120')
$Terminal = Get-Setting 'MT5_TERMINAL_PATH' $Image.terminal.path
$script:IniWrittenAt = $null

function Assert-Settings {
    if ((Get-Setting 'MT5_LOGIN' '') -notmatch '^[0-9]+$') { Stop-WithError 'MT5_LOGIN must be the account number' }
    if (@('mt5', 'simulator') -notcontains $Backend) { Stop-WithError "MT5_BACKEND $Backend is not available in the Windows image (mt5 or simulator)" }
    $needed = @('api_key')
    if ($Backend -eq 'mt5') { $needed += 'password' }
    foreach ($name in $needed) {
        if (-not (Test-Path -LiteralPath (Join-Path $SecretsDir $name) -PathType Leaf)) {
            Stop-WithError "the secret file '$name' is missing in $SecretsDir (mount the account's secrets directory read-only there)"
        }
    }
    if ($Backend -eq 'mt5' -and -not $Image.terminal.included) { Stop-WithError 'this image holds no MT5 terminal (built without one); use MT5_BACKEND=simulator or rebuild with the terminal' }
    if ($Backend -eq 'mt5' -and -not (Test-Path -LiteralPath $Terminal -PathType Leaf)) { Stop-WithError "no terminal at $Terminal" }
}

function Initialize-Data {
    New-Item -ItemType Directory -Force -Path (Join-Path $DataRoot 'service'), (Join-Path $DataRoot 'terminal') | Out-Null
    if (-not $Image.terminal.included) { return }
    $terminalDir = Split-Path -Parent $Terminal
    foreach ($dir in $Image.terminal_data_dirs) {
        $data = Join-Path (Join-Path $DataRoot 'terminal') $dir
        $seed = Join-Path $Image.seed_dir $dir
        $link = Join-Path $terminalDir $dir
        if (-not (Test-Path -LiteralPath $data)) {
            if (Test-Path -LiteralPath $seed) {
                New-Item -ItemType Directory -Force -Path (Split-Path -Parent $data) | Out-Null
                Copy-Item -Recurse -LiteralPath $seed -Destination $data
            } else {
                New-Item -ItemType Directory -Force -Path $data | Out-Null
            }
        }
        $item = Get-Item -LiteralPath $link -Force -ErrorAction SilentlyContinue
        if ($null -ne $item -and -not ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
            Remove-Item -Recurse -Force -LiteralPath $link
            $item = $null
        }
        if ($null -eq $item) {
            New-Item -ItemType Directory -Force -Path (Split-Path -Parent $link) | Out-Null
            New-Item -ItemType Junction -Path $link -Target $data | Out-Null
        }
    }
}

function Start-Terminal {
    # The ini is written fresh before every start: the password goes from the secret file
    # to the ini through Python, never through this script.
    & $Python (Join-Path $Runtime 'write_start_ini.py') --out $IniPath
    if ($LASTEXITCODE -ne 0) { Stop-WithError "could not write the terminal's start ini (exit $LASTEXITCODE)" }
    $script:IniWrittenAt = Get-Date
    $process = Start-Process -FilePath $Terminal -ArgumentList @('/portable', "/config:$IniPath") `
        -WorkingDirectory (Split-Path -Parent $Terminal) -PassThru
    $null = $process.Handle  # keeps the exit code readable after the process ends
    Write-Log "terminal started: $Terminal /portable /config:$IniPath (pid $($process.Id))"
    return $process
}

function Start-AccountService {
    $process = Start-Process -FilePath $Python -ArgumentList @('-m', 'mt5_account_service') -NoNewWindow -PassThru
    $null = $process.Handle
    Write-Log "account service started on port $Port (pid $($process.Id))"
    return $process
}

function Stop-Child($Process, [string]$Name) {
    if ($null -eq $Process -or $Process.HasExited) { return }
    Write-Log "stopping the $Name (pid $($Process.Id))"
    Stop-Process -Id $Process.Id -Force -ErrorAction SilentlyContinue
    $null = $Process.WaitForExit(10000)
}

function Get-Health {
    # 'ok' (200), 'unhealthy' (an answer other than 200: terminal disconnected) or 'down'.
    try {
        $response = Invoke-WebRequest -UseBasicParsing -Uri "http://127.0.0.1:$Port/health" -TimeoutSec 3
        if ($response.StatusCode -eq 200) { return 'ok' }
        return 'unhealthy'
    } catch [System.Net.WebException] {
        if ($null -ne $_.Exception.Response) { return 'unhealthy' }
        return 'down'
    } catch {
        return 'down'
    }
}

function Remove-StartIni {
    if (Test-Path -LiteralPath $IniPath) {
        Remove-Item -Force -LiteralPath $IniPath
        Write-Log 'start ini removed'
    }
    $script:IniWrittenAt = $null
}

Assert-Settings
Initialize-Data
$terminalProcess = $null
if ($Backend -eq 'mt5') { $terminalProcess = Start-Terminal }
$serviceProcess = Start-AccountService
$lastHealthy = Get-Date
$escalated = $false

while ($true) {
    Start-Sleep -Seconds $Interval
    if ($null -ne $terminalProcess -and $terminalProcess.HasExited) {
        Write-Log "terminal exited (code $($terminalProcess.ExitCode)): starting it again"
        $terminalProcess = Start-Terminal
    }
    if ($serviceProcess.HasExited) {
        Write-Log "account service exited (code $($serviceProcess.ExitCode)): starting it again"
        $serviceProcess = Start-AccountService
    }
    $health = Get-Health
    if ($health -eq 'ok') {
        $lastHealthy = Get-Date
        $escalated = $false
        if ($null -ne $script:IniWrittenAt) { Remove-StartIni }
        continue
    }
    if ($null -ne $script:IniWrittenAt -and ((Get-Date) - $script:IniWrittenAt).TotalSeconds -ge $IniKeep) { Remove-StartIni }
    if (((Get-Date) - $lastHealthy).TotalSeconds -lt $Grace) { continue }
    if ($health -eq 'down') {
        Write-Log "no answer on /health for $Grace s: restarting the account service"
        Stop-Child $serviceProcess 'account service'
        $serviceProcess = Start-AccountService
    } elseif ($null -ne $terminalProcess -and -not $escalated) {
        Write-Log "/health not 200 for $Grace s (terminal disconnected): restarting the terminal"
        Stop-Child $terminalProcess 'terminal'
        $terminalProcess = Start-Terminal
        $escalated = $true
    } else {
        Write-Log "/health still not 200 after another $Grace s: restarting the terminal and the account service"
        Stop-Child $serviceProcess 'account service'
        if ($null -ne $terminalProcess) {
            Stop-Child $terminalProcess 'terminal'
            $terminalProcess = Start-Terminal
        }
        $serviceProcess = Start-AccountService
        $escalated = $false
    }
    $lastHealthy = Get-Date
}
