# PowerShell wrapper over OrasStaging.TestKit.dll for Pester files: start/stop the loopback registry (with its
# fault proxy, CDN, token server and control API), publish nosi-shaped artifacts, generate disk images and switch
# proxy faults. Import it with:  Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
# The TestKit dll is found through $env:ORASSTAGING_TESTKIT (build.ps1 sets it for the Test task).

Set-StrictMode -Version Latest

# Isolation: each test file imports this module in its BeforeAll, and the import replaces the variables through
# which a developer's own environment could change a result (a cache server, docker credentials, registry
# mirrors, a CA bundle) with empty ones; removing the module (Import-Module -Force, Remove-Module) restores
# them. DOCKER_CONFIG points at an empty folder of this file's own, so ~/.docker/config.json is never read.
$script:IsolatedVariables = 'WITHCACHE_SERVER', 'DOCKER_CONFIG', 'CONTAINERS_REGISTRIES_CONF', 'SSL_CERT_FILE'
$script:SavedEnvironment = @{}
foreach ($name in $IsolatedVariables) { $SavedEnvironment[$name] = [Environment]::GetEnvironmentVariable($name) }
$script:IsolationFolder = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-testenv-" + [guid]::NewGuid().ToString('n'))
$null = New-Item -ItemType Directory -Path (Join-Path $IsolationFolder 'docker') -Force
# An explicit CONTAINERS_REGISTRIES_CONF must exist (as in the container engines): an empty one means no mirrors.
$null = New-Item -ItemType File -Path (Join-Path $IsolationFolder 'registries.conf') -Force
[Environment]::SetEnvironmentVariable('WITHCACHE_SERVER', $null)
[Environment]::SetEnvironmentVariable('SSL_CERT_FILE', $null)
[Environment]::SetEnvironmentVariable('DOCKER_CONFIG', (Join-Path $IsolationFolder 'docker'))
[Environment]::SetEnvironmentVariable('CONTAINERS_REGISTRIES_CONF', (Join-Path $IsolationFolder 'registries.conf'))
$ExecutionContext.SessionState.Module.OnRemove = {
    foreach ($entry in $script:SavedEnvironment.GetEnumerator()) { [Environment]::SetEnvironmentVariable($entry.Key, $entry.Value) }
    Remove-Item -LiteralPath $script:IsolationFolder -Recurse -Force -ErrorAction SilentlyContinue
}

# Set by -TestKitPath on any function; wins over $env:ORASSTAGING_TESTKIT for the rest of the session.
$script:TestKitPathOverride = $null

function Set-TestKitPathOverride([string] $Path) {
    if ($Path) { $script:TestKitPathOverride = (Resolve-Path -LiteralPath $Path).ProviderPath }
}

function Get-TestKitPath {
    # The dll path, or a clear error naming how to build it.
    $path = if ($script:TestKitPathOverride) { $script:TestKitPathOverride } else { $env:ORASSTAGING_TESTKIT }
    if (-not $path) {
        $candidate = Join-Path $PSScriptRoot '../out/testkit/OrasStaging.TestKit.dll'
        if (Test-Path $candidate) { $path = $candidate }
    }
    if (-not $path -or -not (Test-Path $path)) {
        throw "OrasStaging.TestKit.dll not found (ORASSTAGING_TESTKIT='$($env:ORASSTAGING_TESTKIT)'). Build it: dotnet build tests/OrasStaging.TestKit -c Release -o out/testkit"
    }
    (Resolve-Path $path).ProviderPath
}

function Get-DotnetPath {
    # The dotnet host that runs the TestKit: the one running us under `dotnet pwsh`, else the one on PATH.
    if ($env:DOTNET_HOST_PATH -and (Test-Path $env:DOTNET_HOST_PATH)) { return $env:DOTNET_HOST_PATH }
    $self = [Environment]::ProcessPath
    if ($self -and (Split-Path $self -Leaf) -match '^dotnet(\.exe)?$') { return $self }
    $cmd = Get-Command dotnet -CommandType Application -ErrorAction Ignore | Select-Object -First 1
    if (-not $cmd) { throw 'dotnet was not found on PATH.' }
    $cmd.Source
}

function New-TestKitProcess {
    # Starts `dotnet OrasStaging.TestKit.dll <args>` with redirected standard streams.
    param([string[]] $Arguments)
    $psi = [System.Diagnostics.ProcessStartInfo]::new((Get-DotnetPath))
    $psi.ArgumentList.Add((Get-TestKitPath))
    foreach ($a in $Arguments) { $psi.ArgumentList.Add([string]$a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.Environment['DOTNET_CLI_TELEMETRY_OPTOUT'] = '1'
    $psi.Environment['DOTNET_NOLOGO'] = '1'
    [System.Diagnostics.Process]::Start($psi)
}

function Invoke-TestKit {
    # Runs one TestKit command to completion (bounded) and returns its stdout JSON parsed.
    param([string[]] $Arguments, [int] $TimeoutSeconds = 300)
    $process = New-TestKitProcess $Arguments
    try {
        $process.StandardInput.Close()
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            $process.Kill($true)
            throw "TestKit '$($Arguments[0])' did not finish within $TimeoutSeconds s."
        }
        $process.WaitForExit()
        if ($process.ExitCode -ne 0) {
            throw "TestKit '$($Arguments -join ' ')' failed ($($process.ExitCode)): $($stderr.Result)"
        }
        $stdout.Result | ConvertFrom-Json
    }
    finally {
        $process.Dispose()
    }
}

function Start-TestRegistry {
    <#
    .SYNOPSIS
        Starts a loopback docker-registry with the TestKit's fault proxy, CDN, token server and control API.
    .DESCRIPTION
        Runs `dotnet OrasStaging.TestKit.dll serve` and waits (bounded) for the one JSON line describing the
        endpoints. Returns that object (registry, registryUrl, proxy, proxyUrl, controlUrl, cdnUrl, tokenUrl,
        service, issuer, auth, tls, scheme, username, password, caCertPath, privateRepository, tokenExpiresIn,
        strictTokenExpiry, advertisedTokenExpiresIn, refreshToken (the identitytoken the token server takes),
        dataDir, storageDir, registryLog, registryPid, watchdogPid, pid) plus Authority (= registry) and
        Process. Everything
        stops when Stop-TestRegistry closes the process's stdin, or when this PowerShell process dies.
    .PARAMETER Auth
        anonymous (default), basic (htpasswd, bcrypt) or token (bearer tokens from the TestKit token server).
    .PARAMETER Tls
        Serve https with a certificate for 127.0.0.1 signed by a CA generated at start (caCertPath).
    .PARAMETER TokenExpiresIn
        expires_in (seconds) of issued tokens. distribution 2.8 accepts a token until 60 s after its exp
        claim, so without -StrictTokenExpiry a short expires_in does not make the registry refuse it.
    .PARAMETER StrictTokenExpiry
        Sign exp = iat + expires_in - 60 so the real registry refuses the token expires_in seconds after
        issue (for token-expiry tests against the registry itself; the proxy's Unauthorized fault is the
        deterministic alternative).
    .PARAMETER AdvertisedTokenExpiresIn
        The expires_in the token server tells clients (default -TokenExpiresIn). With -StrictTokenExpiry and a
        larger value, the registry refuses a token -TokenExpiresIn seconds after issue while the client still
        believes it valid (a registry whose clock runs ahead): the registry's own expiry, through a client.
    .PARAMETER ProxyRemoteUrl
        Run the registry as a pull-through cache (distribution's proxy.remoteurl) of this URL, e.g. another test
        registry's proxyUrl, whose Get-ProxyStats then counts what the cache fetched from that origin.
    .PARAMETER TimeoutSeconds
        How long to wait for the registry to come up.
    .PARAMETER TestKitPath
        OrasStaging.TestKit.dll; default $env:ORASSTAGING_TESTKIT. Remembered for the other functions.
    .EXAMPLE
        $r = Start-TestRegistry -Auth token -Tls
        try { ... } finally { Stop-TestRegistry $r }
    #>
    [CmdletBinding()]
    param(
        [ValidateSet('anonymous', 'basic', 'token')]
        [string] $Auth = 'anonymous',
        [switch] $Tls,
        [ValidateRange(1, 86400)]
        [int] $TokenExpiresIn = 300,
        [switch] $StrictTokenExpiry,
        [ValidateRange(1, 86400)]
        [int] $AdvertisedTokenExpiresIn,

        [string] $ProxyRemoteUrl,
        [ValidateRange(1, 600)]
        [int] $TimeoutSeconds = 60,
        [string] $TestKitPath
    )
    Set-TestKitPathOverride $TestKitPath
    $arguments = @('serve', '--auth', $Auth, '--token-expires-in', $TokenExpiresIn)
    if ($Tls) { $arguments += '--tls' }
    if ($StrictTokenExpiry) { $arguments += '--strict-token-expiry' }
    if ($PSBoundParameters.ContainsKey('AdvertisedTokenExpiresIn')) { $arguments += @('--advertised-token-expires-in', $AdvertisedTokenExpiresIn) }
    if ($ProxyRemoteUrl) { $arguments += @('--proxy-remote-url', $ProxyRemoteUrl) }
    $process = New-TestKitProcess $arguments
    $stderr = $process.StandardError.ReadToEndAsync()
    $line = $process.StandardOutput.ReadLineAsync()
    if (-not $line.Wait($TimeoutSeconds * 1000) -or -not $line.Result) {
        $process.Kill($true)
        $process.WaitForExit(5000) | Out-Null
        $err = if ($stderr.Wait(2000)) { $stderr.Result } else { '' }
        $process.Dispose()
        throw "The test registry did not start within $TimeoutSeconds s: $err"
    }
    $info = $line.Result | ConvertFrom-Json
    # "Authority" is the name the module's own docs use for host:port.
    $info | Add-Member -NotePropertyName Authority -NotePropertyValue $info.registry
    $info | Add-Member -NotePropertyName Process -NotePropertyValue $process
    $info | Add-Member -NotePropertyName StandardError -NotePropertyValue $stderr
    $info.PSObject.TypeNames.Insert(0, 'OrasStaging.TestKit.Registry')
    $info
}

function Stop-TestRegistry {
    <#
    .SYNOPSIS
        Stops what Start-TestRegistry started and removes its temporary directory.
    .DESCRIPTION
        Closes the TestKit's stdin (it then stops the registry, the listeners and deletes dataDir) and waits up
        to -TimeoutSeconds; kills the process tree if it has not exited by then. Safe to call twice or with $null.
    .PARAMETER Registry
        The object Start-TestRegistry returned.
    .EXAMPLE
        Stop-TestRegistry $r
    #>
    [CmdletBinding()]
    param(
        [Parameter(Position = 0, ValueFromPipeline)]
        [AllowNull()]
        [object] $Registry,
        [int] $TimeoutSeconds = 20
    )
    process {
        if (-not $Registry -or -not $Registry.PSObject.Properties['Process']) { return }
        $process = $Registry.Process
        try {
            if (-not $process.HasExited) {
                try { $process.StandardInput.Close() } catch { Write-Verbose "stdin already closed: $_" }
                if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
                    Write-Warning "Test registry (pid $($process.Id)) did not stop within $TimeoutSeconds s; killing it."
                    $process.Kill($true)
                    $process.WaitForExit(5000) | Out-Null
                }
            }
        }
        catch [System.InvalidOperationException] {
            # Already disposed: nothing left to stop.
        }
        finally {
            $process.Dispose()
        }
        if ($Registry.dataDir -and (Test-Path -LiteralPath $Registry.dataDir)) {
            Remove-Item -LiteralPath $Registry.dataDir -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}

function Publish-TestImage {
    <#
    .SYNOPSIS
        Pushes a nosi-shaped disk-image artifact (or a Helm chart look-alike) to the test registry.
    .DESCRIPTION
        Manifest application/vnd.oci.image.manifest.v1+json, artifactType application/vnd.nosi.disk-image.v1+<c>,
        empty config (application/vnd.oci.empty.v1+json, sha256:44136fa3…), layers: <title>
        (application/vnd.nosi.disk-image.layer.v1+<c>, annotations org.opencontainers.image.title and
        org.nosi.image.size = raw size), <title>.sha256 (text/plain, "<hex>  <title>\n"), metadata.json
        (application/vnd.nosi.metadata.v1+json). <c> is gzip|zstd|xz|bzip2; none drops the suffix.
        -ImagePath (alias -Path) is a raw image, compressed as -Compression says; a file that is already
        compressed (gzip, zstd, xz or bzip2 magic bytes) is pushed as the layer as it is, its compression taken
        from the magic (rawSha256/rawSize are then computed by decompressing it).
        Pushes straight to the registry unless -ViaProxy (faults apply to GETs only, so pushes through the proxy
        work too). Credentials and TLS come from the registry object. Returns the TestKit's JSON: reference,
        repository, tag, manifestDigest, manifestSize, manifestMediaType, artifactType, digest (layer blob), size
        (layer), title, mediaType, compression, sidecarDigest, metadataDigest, configDigest, indexDigest (with
        -Index), rawSha256, rawSize, platforms (with -Index; the top level then describes linux/amd64).
    .PARAMETER Registry
        The object Start-TestRegistry returned.
    .PARAMETER Index
        Tag an OCI index over linux/amd64 (this image) and linux/arm64 (a distinct copy of it).
    .PARAMETER Helm
        Push a Helm-chart-shaped artifact instead (config application/vnd.cncf.helm.config.v1+json, layer
        application/vnd.cncf.helm.chart.content.v1.tar+gzip); -ImagePath is then not needed.
    .PARAMETER Anonymous
        Push without credentials even when the registry has them (to test refusals).
    .EXAMPLE
        $p = Publish-TestImage -Registry $r -Repository lab/debian -Tag latest -ImagePath $img -Compression zstd
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [object] $Registry,
        [string] $Repository = 'lab/debian',
        [string] $Tag = 'latest',
        [Alias('Path')]
        [string] $ImagePath,
        [ValidateSet('gzip', 'zstd', 'xz', 'bzip2', 'none')]
        [string] $Compression = 'gzip',
        [string] $Title,
        [switch] $Index,
        [switch] $Helm,
        [switch] $NoSizeAnnotation,
        # The org.nosi.image.size value to annotate instead of the real raw size (wrong or lying metadata).
        [long] $DeclaredSize = -1,
        [switch] $ViaProxy,
        [switch] $Anonymous,
        [int] $TimeoutSeconds = 300,
        [string] $TestKitPath
    )
    Set-TestKitPathOverride $TestKitPath
    $target = if ($ViaProxy) { $Registry.proxy } else { $Registry.registry }
    $arguments = @('push', '--registry', $target, '--repository', $Repository, '--tag', $Tag, '--compression', $Compression)
    if ($Helm) {
        $arguments += '--helm'
    }
    else {
        if (-not $ImagePath) { throw '-ImagePath is required unless -Helm is given.' }
        $arguments += @('--image', $PSCmdlet.GetUnresolvedProviderPathFromPSPath($ImagePath))
    }
    if ($Title) { $arguments += @('--title', $Title) }
    if ($Index) { $arguments += '--index' }
    if ($NoSizeAnnotation) { $arguments += '--no-size-annotation' }
    if ($DeclaredSize -ge 0) { $arguments += @('--declared-size', $DeclaredSize) }
    if ($Registry.auth -ne 'anonymous' -and -not $Anonymous) {
        $arguments += @('--username', $Registry.username, '--password', $Registry.password)
    }
    if ($Registry.tls) { $arguments += @('--tls', '--ca', $Registry.caCertPath) }
    Invoke-TestKit $arguments -TimeoutSeconds $TimeoutSeconds
}

function Publish-TestLayout {
    <#
    .SYNOPSIS
        Pushes the manifests (and index) a spec describes: containerDisks, podman/CoreOS/KubeVirt disk indexes.
    .DESCRIPTION
        -Spec is a hashtable in the shape tests/OrasStaging.TestKit/ArtifactPusher.Layout.cs documents (manifests
        with layers from files, text or tar members; an optional index over them). Returns the TestKit's JSON:
        reference, manifests (mediaType, digest, size, layers), indexDigest.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [object] $Registry,
        [Parameter(Mandatory)] [string] $Repository,
        [string] $Tag = 'latest',
        [Parameter(Mandatory)] [hashtable] $Spec,
        [int] $TimeoutSeconds = 300,
        [string] $TestKitPath
    )
    Set-TestKitPathOverride $TestKitPath
    $specPath = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-layout-" + [guid]::NewGuid().ToString('n') + '.json')
    try {
        $Spec | ConvertTo-Json -Depth 20 | Set-Content -LiteralPath $specPath -Encoding utf8NoBOM
        $arguments = @('push-layout', '--registry', $Registry.registry, '--repository', $Repository, '--tag', $Tag, '--spec', $specPath)
        if ($Registry.auth -ne 'anonymous') { $arguments += @('--username', $Registry.username, '--password', $Registry.password) }
        if ($Registry.tls) { $arguments += @('--tls', '--ca', $Registry.caCertPath) }
        Invoke-TestKit $arguments -TimeoutSeconds $TimeoutSeconds
    }
    finally {
        Remove-Item -LiteralPath $specPath -Force -ErrorAction Ignore
    }
}

function New-TestDiskImage {
    <#
    .SYNOPSIS
        Writes a deterministic raw disk image (sparse where possible) and returns its FileInfo.
    .DESCRIPTION
        Realistic: protective MBR (0x55AA at 510), GPT header "EFI PART" at 512 with partition entries, backup
        GPT at the end (the last sector is never zero), scattered random / text-like / mixed data clusters and
        long zero runs; about -DataFraction of the 64 KiB clusters hold data. Zeros: all zero. Random: all
        pseudo-random. Same (Size, Seed, Shape, DataFraction) gives the same bytes; any size works.
    .EXAMPLE
        $img = New-TestDiskImage -Path TestDrive:/disk.img -Size (5MB + 100) -Seed 7
    #>
    [CmdletBinding()]
    [OutputType([System.IO.FileInfo])]
    param(
        [Parameter(Mandatory)] [string] $Path,
        [Parameter(Mandatory)] [ValidateRange(0, [long]::MaxValue)] [long] $Size,
        [int] $Seed = 1,
        [ValidateSet('Realistic', 'Zeros', 'Random')]
        [string] $Shape = 'Realistic',
        [ValidateRange(0.0, 1.0)]
        [double] $DataFraction = 0.33,
        [int] $TimeoutSeconds = 300,
        [string] $TestKitPath
    )
    Set-TestKitPathOverride $TestKitPath
    $full = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Path)
    $null = Invoke-TestKit @('generate-image', '--out', $full, '--size', $Size, '--seed', $Seed, '--shape', $Shape.ToLowerInvariant(),
        '--data-fraction', $DataFraction.ToString([cultureinfo]::InvariantCulture)) -TimeoutSeconds $TimeoutSeconds
    Get-Item -LiteralPath $full
}

function Set-ProxyFault {
    <#
    .SYNOPSIS
        Adds a fault to the proxy in front of the test registry (POST controlUrl/faults); returns it.
    .DESCRIPTION
        Faults apply to GET requests of -Target (Blob by default) through the proxy (proxy/proxyUrl), in the order
        they were added; one request triggers at most one fault. Kinds:
          Cut                 close the connection after -AfterBytes body bytes (-Times requests).
          TooManyRequests     429 with Retry-After: -RetryAfter (default 1) (-Times requests).
          ServiceUnavailable  503, with Retry-After when -RetryAfter is given (-Times requests).
          Unauthorized        401 with the registry's challenge (Bearer realm=tokenUrl,service,scope; Basic in
                              basic mode) for -Times requests. With -AfterBytes: the first matching GET is cut
                              after that many bytes and its Authorization value "expires": later GETs carrying
                              the same value get the 401 (-Times of them); a fresh token passes.
          Corrupt             flip (XOR 0xFF) the byte at blob offset -Offset (default 0; 206 bodies are mapped
                              through Content-Range) (-Times requests); with -AfterBytes, then cut there.
          IgnoreRange         forward a GET that carries Range without it, so the registry answers 200 with the
                              whole blob; with -AfterBytes, cut that body there. GETs without Range pass untouched.
          Stall               send the headers and -AfterBytes (default 0) body bytes, then nothing until the
                              client gives up or Clear-ProxyFault.
          Redirect            307 to cdnUrl/blobs/<repo>/<digest>?X-Amz-Signature=…; the CDN serves the same
                              bytes with Range support and counts requests carrying Authorization. Default
                              -Times -1 (until cleared). -RejectAuthorization: the CDN answers 400 to those.
                              -ExpireAfter n: each redirect URL answers 403 (expired) after n requests, so a
                              client must go back to the registry for a fresh one.
          Throttle            send the body at -BytesPerSecond (-Times requests); Clear-ProxyFault lets a throttled
                              body already under way finish at full speed (to hold a client, then release it).
                              -AfterBytes n: cut the slow body there (the client must come back later).
          Status              answer -StatusCode (408, 403, 404, ...) without asking the registry, with Retry-After
                              when -RetryAfter is given (-Times requests).
        -Times -1 means until Clear-ProxyFault. -PathContains limits the fault to paths containing that text.
        Cut, Corrupt, Throttle, Redirect and the cut of Unauthorized -AfterBytes fire only when the registry
        answers the request with 2xx, so the unauthenticated first request of a token dance (401) does not use
        them up; TooManyRequests, ServiceUnavailable, Unauthorized and Status answer without asking the registry.
    .EXAMPLE
        Set-ProxyFault -Registry $r -Kind Cut -AfterBytes 100000 -Times 2
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [object] $Registry,
        [Parameter(Mandatory)]
        [ValidateSet('Cut', 'TooManyRequests', 'ServiceUnavailable', 'Unauthorized', 'Corrupt', 'Redirect', 'Throttle', 'Status', 'IgnoreRange', 'Stall')]
        [string] $Kind,
        [ValidateRange(400, 599)]
        [int] $StatusCode,
        [int] $Times,
        [long] $AfterBytes,
        [int] $RetryAfter,
        [long] $Offset,
        [ValidateSet('Blob', 'Manifest', 'Any')]
        [string] $Target = 'Blob',
        [switch] $RejectAuthorization,
        [int] $ExpireAfter,
        [long] $BytesPerSecond,
        [string] $PathContains
    )
    $body = @{ kind = $Kind; target = $Target.ToLowerInvariant() }
    if ($PSBoundParameters.ContainsKey('Times')) { $body.times = $Times }
    if ($PSBoundParameters.ContainsKey('AfterBytes')) { $body.afterBytes = $AfterBytes }
    if ($PSBoundParameters.ContainsKey('RetryAfter')) { $body.retryAfter = $RetryAfter }
    if ($PSBoundParameters.ContainsKey('Offset')) { $body.offset = $Offset }
    if ($RejectAuthorization) { $body.rejectAuthorization = $true }
    if ($PSBoundParameters.ContainsKey('ExpireAfter')) { $body.expireAfter = $ExpireAfter }
    if ($PSBoundParameters.ContainsKey('BytesPerSecond')) { $body.bytesPerSecond = $BytesPerSecond }
    if ($PathContains) { $body.pathContains = $PathContains }
    if ($PSBoundParameters.ContainsKey('StatusCode')) { $body.statusCode = $StatusCode }
    Invoke-RestMethod -Method Post -Uri "$($Registry.controlUrl)/faults" -ContentType 'application/json' `
        -Body ($body | ConvertTo-Json -Compress) -TimeoutSec 10
}

function Get-ProxyFault {
    <#
    .SYNOPSIS
        Lists the proxy's faults with their remaining and fired counts (GET controlUrl/faults).
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory)] [object] $Registry)
    Invoke-RestMethod -Method Get -Uri "$($Registry.controlUrl)/faults" -TimeoutSec 10
}

function Clear-ProxyFault {
    <#
    .SYNOPSIS
        Removes every proxy fault (DELETE controlUrl/faults).
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory)] [object] $Registry)
    $null = Invoke-RestMethod -Method Delete -Uri "$($Registry.controlUrl)/faults" -TimeoutSec 10
}

function Get-ProxyStats {
    <#
    .SYNOPSIS
        Returns what the proxy, the CDN and the token server saw (GET controlUrl/stats).
    .DESCRIPTION
        Fields: totalRequests (through the proxy), requestsByKind (ping, manifest, blob, upload, tags, catalog,
        referrers, other; and token = requests to the token server, which are not in totalRequests),
        blobBytesSent (blob GET body bytes through the proxy), rangeHeaders, faultsFired (per kind, camelCase),
        cdnRequests, cdnRequestsWithAuthorization, cdnBytesSent, cdnRangeHeaders, tokenRequests,
        tokenRequestsGranted, tokenRequestsDenied, tokenScopes, tokenPostsByGrantType (OAuth2 POSTs by grant_type), requests and cdnLog (method, path, target (path and query), startedMs (Unix ms), kind, status,
        range, authorization (bool), fault). Counts requests through the proxy only, not direct ones.
    .PARAMETER Reset
        Zero the counters after reading them.
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory)] [object] $Registry, [switch] $Reset)
    Invoke-RestMethod -Method Get -Uri "$($Registry.controlUrl)/stats" -TimeoutSec 10
    if ($Reset) { Reset-ProxyStats -Registry $Registry }
}

function Reset-ProxyStats {
    <#
    .SYNOPSIS
        Zeroes the proxy/CDN/token counters (POST controlUrl/stats/reset).
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory)] [object] $Registry)
    $null = Invoke-RestMethod -Method Post -Uri "$($Registry.controlUrl)/stats/reset" -TimeoutSec 10
}

function Start-ChildPwsh {
    <#
    .SYNOPSIS
        Starts a script in a new, non-interactive pwsh (as Invoke-ChildPwsh does) and returns the running Process,
        its output and error redirected, so a test can kill it mid-way (Kill($true)) and read what it wrote.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [string] $Command,
        [hashtable] $Environment = @{},
        [string[]] $Unset = @()
    )
    $psi = [System.Diagnostics.ProcessStartInfo]::new([Environment]::ProcessPath)
    if ((Split-Path ([Environment]::ProcessPath) -Leaf) -match '^dotnet') {
        $psi.ArgumentList.Add([Environment]::GetCommandLineArgs()[0])
    }
    foreach ($a in '-NoProfile', '-NonInteractive', '-Command', $Command) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    foreach ($k in $Unset) { $psi.Environment.Remove($k) | Out-Null }
    foreach ($k in $Environment.Keys) { $psi.Environment[$k] = $Environment[$k] }
    $p = [System.Diagnostics.Process]::Start($psi)
    $p.StandardInput.Close()
    $p
}

function Invoke-ChildPwsh {
    <#
    .SYNOPSIS
        Runs a script in a new, non-interactive pwsh (the same pwsh as this one, through dotnet when the tool
        manifest's pwsh is used) and returns its output, error text and exit code once it ends (bounded).
    .PARAMETER Unset
        Variables removed from the child's environment before -Environment is applied.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [string] $Command,
        [hashtable] $Environment = @{},
        [string[]] $Unset = @(),
        [int] $TimeoutSeconds = 120
    )
    $p = Start-ChildPwsh -Command $Command -Environment $Environment -Unset $Unset
    $stdout = $p.StandardOutput.ReadToEndAsync()
    $stderr = $p.StandardError.ReadToEndAsync()
    if (-not $p.WaitForExit($TimeoutSeconds * 1000)) { $p.Kill($true); throw "The child pwsh did not finish within $TimeoutSeconds s." }
    $p.WaitForExit()
    [pscustomobject]@{ Out = $stdout.Result; Err = $stderr.Result; ExitCode = $p.ExitCode }
}

function Start-TestCacheServer {
    <#
    .SYNOPSIS
        A loopback stand-in for the withcache server: GET/HEAD /b/<key>/<digest> served from -Files, 404 otherwise.
    .DESCRIPTION
        Returns Url, Files (a concurrent dictionary: URL path -> local file to serve), Log (a concurrent queue of
        "<METHOD> <path> auth=<True|False>" lines) and what Stop-TestCacheServer needs. A random port may be
        taken by another server on the machine, so a few are tried.
    #>
    [CmdletBinding()]
    param()
    for ($try = 0; ; $try++) {
        $listener = [System.Net.HttpListener]::new()
        $port = Get-Random -Minimum 20000 -Maximum 60000
        $listener.Prefixes.Add("http://127.0.0.1:$port/")
        try { $listener.Start(); break }
        catch { if ($try -ge 20) { throw } }
    }
    $files = [System.Collections.Concurrent.ConcurrentDictionary[string, string]]::new()
    $log = [System.Collections.Concurrent.ConcurrentQueue[string]]::new()
    $job = Start-ThreadJob -ScriptBlock {
        param($Listener, $Files, $Log)
        while ($Listener.IsListening) {
            try { $ctx = $Listener.GetContext() } catch { break }
            $path = $ctx.Request.Url.AbsolutePath
            $Log.Enqueue("$($ctx.Request.HttpMethod) $path auth=$([bool]$ctx.Request.Headers['Authorization'])")
            $file = $null
            if ($Files.TryGetValue($path, [ref] $file)) {
                $bytes = [IO.File]::ReadAllBytes($file)
                $ctx.Response.ContentLength64 = $bytes.Length
                if ($ctx.Request.HttpMethod -eq 'GET') { $ctx.Response.OutputStream.Write($bytes, 0, $bytes.Length) }
            }
            else { $ctx.Response.StatusCode = 404 }
            $ctx.Response.Close()
        }
    } -ArgumentList $listener, $files, $log
    [pscustomobject]@{ Listener = $listener; Url = "http://127.0.0.1:$port"; Files = $files; Log = $log; Job = $job }
}

function Stop-TestCacheServer {
    <#
    .SYNOPSIS
        Stops what Start-TestCacheServer started; safe with $null.
    #>
    [CmdletBinding()]
    param([Parameter(Position = 0)] [AllowNull()] [object] $Cache)
    if (-not $Cache) { return }
    $Cache.Listener.Stop()
    $Cache.Listener.Close()
    $Cache.Job | Wait-Job -Timeout 10 | Out-Null
    $Cache.Job | Remove-Job -Force
}

Export-ModuleMember -Function Start-TestRegistry, Stop-TestRegistry, Publish-TestImage, Publish-TestLayout, New-TestDiskImage,
    Set-ProxyFault, Get-ProxyFault, Clear-ProxyFault, Get-ProxyStats, Reset-ProxyStats, Invoke-ChildPwsh, Start-ChildPwsh,
    Start-TestCacheServer, Stop-TestCacheServer
