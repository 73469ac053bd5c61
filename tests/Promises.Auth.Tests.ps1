# README auth promises through the cmdlets against the real registry (basic and token modes): docker's
# config.json found under HOME by default, credHelpers and credsStore through a real helper program on PATH,
# credentials refused over plain http to a host that is not loopback, and a token fetched once and reused.
# Each credential case runs in a child pwsh with its own HOME, PATH and no DOCKER_CONFIG, because the module
# reads those from the process environment.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path $TestDrive 'auth'
    $null = New-Item -ItemType Directory -Path $Work
    $script:Image = Join-Path $Work 'src.raw'
    $null = New-TestDiskImage -Path $Image -Size 1MB -Seed 5
    $script:B = Start-TestRegistry -Auth basic
    $script:BP = Publish-TestImage -Registry $B -Repository $B.privateRepository -ImagePath $Image
    $script:BRef = "oras://$($B.proxy)/$($B.privateRepository):latest"

    function script:Invoke-Child([string] $Script, [hashtable] $Environment) {
        Invoke-ChildPwsh -Command $Script -Environment $Environment -TimeoutSeconds 180 `
            -Unset DOCKER_CONFIG, REGISTRY_AUTH_FILE, TF_BUILD, WITHCACHE_SERVER
    }

    # Resolves the private repository; prints DIGEST=<layer digest> or ERROR=<error id>, then DONE.
    $script:ResolveScript = @"
Import-Module '$($env:ORASSTAGING_MODULE)'
`$r = Resolve-OrasImage '$BRef' -PlainHttp -ErrorAction SilentlyContinue -ErrorVariable failure
if (`$r) { 'DIGEST=' + `$r.Digest } else { 'ERROR=' + `$failure[0].FullyQualifiedErrorId }
'DONE'
"@

    function script:New-Home([string] $Name, [object] $Config) {
        $homeDir = Join-Path $Work $Name
        $null = New-Item -ItemType Directory -Path (Join-Path $homeDir '.docker') -Force
        if ($Config) { $Config | ConvertTo-Json -Depth 5 | Set-Content (Join-Path $homeDir '.docker/config.json') }
        $homeDir
    }

    # docker-credential-<name>: a real program on PATH, as docker runs it (`get`, server URL on stdin, JSON out).
    # It records each call so the test sees that the module asked it.
    function script:New-Helper([string] $Name, [string] $Folder, [string] $User, [string] $Secret) {
        $null = New-Item -ItemType Directory -Path $Folder -Force
        $path = Join-Path $Folder "docker-credential-$Name"
        $log = Join-Path $Folder 'calls.log'
        @"
#!/bin/sh
read server
echo "`$1 `$server" >> '$log'
[ "`$1" = get ] || exit 1
printf '{"ServerURL":"%s","Username":"$User","Secret":"$Secret"}\n' "`$server"
"@ | Set-Content -NoNewline $path
        & chmod +x $path
        $log
    }

    function script:Assert-Done($Result) {
        $Result.ExitCode | Should -Be 0 -Because "the child pwsh must not fail: $($Result.Err)"
        $Result.Out | Should -Match '(?m)^DONE\s*$'
    }
}

AfterAll {
    Stop-TestRegistry $B
}

Describe 'docker config.json found by default (HOME, no DOCKER_CONFIG)' {
    It 'reads ~/.docker/config.json auths for the private repository, and without it the repository is refused' {
        $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($B.username):$($B.password)"))
        $withConfig = New-Home 'home-auths' @{ auths = @{ $B.proxy = @{ auth = $auth } } }
        $r = Invoke-Child $ResolveScript @{ HOME = $withConfig }
        Assert-Done $r
        $r.Out | Should -Match "(?m)^DIGEST=$([regex]::Escape($BP.digest))\s*$"

        # The control: the same child with an empty HOME is refused, so the success above came from the file.
        $empty = New-Home 'home-empty' $null
        $r = Invoke-Child $ResolveScript @{ HOME = $empty }
        Assert-Done $r
        $r.Out | Should -Match '(?m)^ERROR=(AuthenticationFailed|AccessDenied),OrasStaging\.'
    }
}

Describe 'credential helpers on PATH' {
    It 'credHelpers names a docker-credential- program, which is run with get and the server' {
        $bin = Join-Path $Work 'bin-helpers'
        $log = New-Helper 'otest' $bin $B.username $B.password
        $homeDir = New-Home 'home-helpers' @{ credHelpers = @{ $B.proxy = 'otest' } }
        $r = Invoke-Child $ResolveScript @{ HOME = $homeDir; PATH = "$bin$([IO.Path]::PathSeparator)$env:PATH" }
        Assert-Done $r
        $r.Out | Should -Match "(?m)^DIGEST=$([regex]::Escape($BP.digest))\s*$"
        (Get-Content $log) | Should -Contain "get $($B.proxy)"
    }

    It 'credsStore is used for every registry, and a helper with wrong credentials is refused' {
        $bin = Join-Path $Work 'bin-store'
        $log = New-Helper 'ostore' $bin $B.username $B.password
        $homeDir = New-Home 'home-store' @{ credsStore = 'ostore' }
        $r = Invoke-Child $ResolveScript @{ HOME = $homeDir; PATH = "$bin$([IO.Path]::PathSeparator)$env:PATH" }
        Assert-Done $r
        $r.Out | Should -Match "(?m)^DIGEST=$([regex]::Escape($BP.digest))\s*$"
        (Get-Content $log) | Should -Contain "get $($B.proxy)"

        $badBin = Join-Path $Work 'bin-store-bad'
        $null = New-Helper 'ostore' $badBin $B.username 'not-the-password'
        $r = Invoke-Child $ResolveScript @{ HOME = $homeDir; PATH = "$badBin$([IO.Path]::PathSeparator)$env:PATH" }
        Assert-Done $r
        $r.Out | Should -Match '(?m)^ERROR=(AuthenticationFailed|AccessDenied),OrasStaging\.'
    }
}

Describe 'credentials over plain http' {
    BeforeAll {
        # A name that resolves to 127.0.0.1 but is not "localhost" or an IP literal: the machine's own host name
        # (Debian and containers map it in /etc/hosts). Tests listen on 127.0.0.1 only, so nothing else will do.
        $script:AliasName = [Net.Dns]::GetHostName()
        $script:Aliased = try { ([Net.Dns]::GetHostAddresses($AliasName) | ForEach-Object IPAddressToString) -contains '127.0.0.1' } catch { $false }
    }

    It 'sends no credentials over http to a host name that is not loopback (the same registry by its 127.0.0.1 name works)' {
        if (-not $Aliased) { Set-ItResult -Skipped -Because "the host name '$AliasName' does not resolve to 127.0.0.1 here" }
        $cred = [pscredential]::new($B.username, (ConvertTo-SecureString $B.password -AsPlainText -Force))
        $port = ($B.proxy -split ':')[-1]
        Reset-ProxyStats -Registry $B
        $err = $null
        $r = Resolve-OrasImage "oras://${AliasName}:$port/$($B.privateRepository):latest" -PlainHttp -Credential $cred -ErrorVariable err -ErrorAction SilentlyContinue
        $r | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
        $stats = Get-ProxyStats -Registry $B
        $stats.totalRequests | Should -BeGreaterThan 0 -Because 'the registry was reached (and challenged)'
        @($stats.requests | Where-Object authorization).Count | Should -Be 0

        # The control: the same credentials to 127.0.0.1 are sent and work.
        (Resolve-OrasImage $BRef -PlainHttp -Credential $cred).Digest | Should -Be $BP.digest
    }
}

Describe 'token cache' {
    BeforeAll {
        $script:T = Start-TestRegistry -Auth token
        $script:TP = Publish-TestImage -Registry $T -Repository 'lab/tokens' -ImagePath $Image
    }

    AfterAll {
        Stop-TestRegistry $T
    }

    It 'fetches one token for a whole install (manifest, sidecar and blob requests) and reuses it' {
        $target = Join-Path $Work 'token.img'
        Reset-ProxyStats -Registry $T
        $null = Install-DiskImageFromOras "oras://$($T.proxy)/lab/tokens:latest" -Path $target -Format Raw -PlainHttp -CacheServer '' -Force
        $stats = Get-ProxyStats -Registry $T
        $authorized = @($stats.requests | Where-Object { $_.authorization -and $_.status -lt 400 })
        $authorized.Count | Should -BeGreaterOrEqual 2 -Because 'the manifest and the blob were fetched with the token'
        $stats.tokenRequests | Should -Be 1
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $TP.rawSha256
    }
}
