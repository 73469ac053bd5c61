#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Registry mirrors and the lab recipe: a second docker-registry in pull-through mode (proxy.remoteurl pointing at
# the test registry's fault proxy, which plays the origin and counts every request the cache and the clients make),
# -Mirror, registries.conf (CONTAINERS_REGISTRIES_CONF, -RegistryConfigPath, ~/.config/containers), per-host
# credentials, and a fleet of independent targets (separate folders and HOME, each its own pwsh) staged through it.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-mirrors-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'fleet.img') -Size 6MB -Seed 41).FullName

    # The origin, and a pull-through cache of it. The cache fetches through the origin's fault proxy, so the
    # origin's Get-ProxyStats counts what the mirror asks as well as what clients ask directly.
    $script:O = Start-TestRegistry
    $script:M = Start-TestRegistry -ProxyRemoteUrl $O.proxyUrl
    $script:Pub = Publish-TestImage -Registry $O -Repository lab/fleet -ImagePath $Raw
    $script:Ref = "oras://$($O.proxy)/lab/fleet:latest"

    function script:New-Folder([string] $Name) {
        $folder = Join-Path $Work $Name
        $null = New-Item -ItemType Directory -Force $folder
        $folder
    }

    function script:Get-Sha([string] $Path) { 'sha256:' + (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() }

    # GETs of one blob the origin served (to the mirror and to clients alike).
    function script:Get-OriginBlobGets([object] $Registry, [string] $Digest) {
        @((Get-ProxyStats -Registry $Registry).requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$Digest" }).Count
    }

    function script:Get-OriginBlobRequests([object] $Registry) {
        @((Get-ProxyStats -Registry $Registry).requests | Where-Object { $_.path -like '*/blobs/*' }).Count
    }

    function script:Get-Receipt([string] $ImagePath) { Get-Content -Raw -LiteralPath "$ImagePath.oras.json" | ConvertFrom-Json }

    # A port nothing listens on: bound by the OS, then released.
    function script:Get-DeadPort {
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start()
        try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
    }

    # The blob file in a registry's storage: a pull-through cache has stored it once it is there, whole.
    function script:Wait-MirrorStored([object] $Mirror, [string] $Digest, [long] $Size) {
        $hex = $Digest.Substring(7)
        $data = Join-Path $Mirror.storageDir "docker/registry/v2/blobs/sha256/$($hex.Substring(0, 2))/$hex/data"
        for ($i = 0; $i -lt 300; $i++) {
            if ((Test-Path -LiteralPath $data) -and (Get-Item -LiteralPath $data).Length -eq $Size) { return }
            Start-Sleep -Milliseconds 100
        }
        throw "The mirror did not store $Digest."
    }

    # One target host: its own folder and HOME (docker config, registries.conf under ~/.config/containers), its
    # own pwsh process. Returns the folder.
    function script:New-TargetHost([string] $Name, [string] $RegistriesConf) {
        $home_ = New-Folder $Name
        $null = New-Item -ItemType Directory -Force (Join-Path $home_ '.docker'), (Join-Path $home_ '.config/containers')
        if ($RegistriesConf) { Set-Content -LiteralPath (Join-Path $home_ '.config/containers/registries.conf') -Value $RegistriesConf }
        $home_
    }

    # Stages $Reference onto each host folder concurrently, each in a child pwsh with HOME set to that folder, as
    # ForEach-Object -Parallel (or Invoke-Command over SSH) would on separate hosts. Returns one result per host.
    $script:ChildPwsh = (Get-Command Invoke-ChildPwsh).ScriptBlock.ToString()
    $script:StartChildPwsh = (Get-Command Start-ChildPwsh).ScriptBlock.ToString()  # Invoke-ChildPwsh calls it
    function script:Invoke-Fleet([string[]] $Hosts, [string] $Reference, [string] $Extra = '') {
        $module = $env:ORASSTAGING_MODULE
        $definition = $ChildPwsh
        $starter = $StartChildPwsh
        $Hosts | ForEach-Object -ThrottleLimit 4 -Parallel {
            $null = New-Item -Path function:Invoke-ChildPwsh -Value ([scriptblock]::Create($using:definition))
            $null = New-Item -Path function:Start-ChildPwsh -Value ([scriptblock]::Create($using:starter))
            $target = Join-Path $_ 'images/disk.qcow2'
            $script = "Import-Module '$using:module'; " +
                "Install-DiskImageFromOras '$using:Reference' -Path '$target' -RetryIntervalSec 0 $using:Extra -ErrorAction Stop | Out-Null; 'ok'"
            $run = Invoke-ChildPwsh -Command $script -TimeoutSeconds 300 -Unset CONTAINERS_REGISTRIES_CONF, WITHCACHE_SERVER `
                -Environment @{ HOME = $_; DOCKER_CONFIG = (Join-Path $_ '.docker') }
            [pscustomobject]@{ Host = $_; Target = $target; Out = $run.Out; Err = $run.Err; ExitCode = $run.ExitCode }
        }
    }

    # What each target must show: the staged image, its stamp and receipt for the published layer.
    function script:Assert-Staged([object[]] $Results, [string] $From) {
        foreach ($r in $Results) {
            $r.ExitCode | Should -Be 0 -Because "$($r.Host): $($r.Err)"
            $r.Out | Should -Match 'ok'
            (Get-Content -Raw -LiteralPath "$($r.Target).digest").Trim() | Should -Be $Pub.digest
            $receipt = Get-Receipt $r.Target
            $receipt.digest | Should -Be $Pub.digest
            if ($From) { $receipt.blobSource | Should -BeLike $From }
            $raw = Join-Path $r.Host 'check.raw'
            & qemu-img convert -f qcow2 -O raw $r.Target $raw
            $LASTEXITCODE | Should -Be 0
            Get-Sha $raw | Should -Be "sha256:$($Pub.rawSha256)"
        }
    }

    function script:New-MirrorConf([string] $Mirror, [string] $Extra = '') {
        @"
[[registry]]
prefix = "$($O.proxy)"
location = "$($O.proxy)"
$Extra

[[registry.mirror]]
location = "$Mirror"
insecure = true
"@
    }
}

AfterAll {
    Stop-TestRegistry $M
    Stop-TestRegistry $O
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'The lab recipe: a pull-through cache warmed once, then a fleet of targets' {
    It 'costs the origin at most 2 GETs of the image blob for 4 targets, none during the fan-out, none in a second round' {
        $conf = New-MirrorConf $M.proxy
        Reset-ProxyStats -Registry $O

        # Warm the mirror: one Save-OrasBlob through it (tag resolved at the origin, blobs through the cache).
        $warm = Save-OrasBlob $Ref (New-Folder 'warm') -Mirror $M.proxy -RetryIntervalSec 0 -ErrorAction Stop
        Get-Sha $warm.FullName | Should -Be $Pub.digest
        Wait-MirrorStored $M $Pub.digest $Pub.size
        $warmGets = Get-OriginBlobGets $O $Pub.digest
        $warmGets | Should -BeLessOrEqual 2

        Reset-ProxyStats -Registry $O
        $hosts = 1..4 | ForEach-Object { New-TargetHost "round1-host$_" $conf }
        $results = Invoke-Fleet $hosts $Ref
        Assert-Staged $results -From "mirror $($M.proxy)/lab/fleet"
        Get-OriginBlobGets $O $Pub.digest | Should -Be 0 -Because 'the fan-out is served by the warm mirror'
        ($warmGets + (Get-OriginBlobGets $O $Pub.digest)) | Should -BeLessOrEqual 2

        Reset-ProxyStats -Registry $O
        $hosts = 1..4 | ForEach-Object { New-TargetHost "round2-host$_" $conf }
        Assert-Staged (Invoke-Fleet $hosts $Ref) -From "mirror $($M.proxy)/lab/fleet"
        Get-OriginBlobRequests $O | Should -Be 0 -Because 'a second round asks the origin for no blob at all (layer and sidecar)'
        @((Get-ProxyStats -Registry $O).requests | Where-Object { $_.kind -eq 'Manifest' }).Count |
            Should -BeGreaterThan 0 -Because 'the tag is still resolved at the origin'
    }

    It 'measures the cold concurrent cost: 4 targets through a cold cache' {
        $cold = Publish-TestImage -Registry $O -Repository lab/cold -ImagePath (New-TestDiskImage -Path (Join-Path $Work 'cold.img') -Size 6MB -Seed 43).FullName
        Reset-ProxyStats -Registry $O
        $hosts = 1..4 | ForEach-Object { New-TargetHost "cold-host$_" (New-MirrorConf $M.proxy) }
        $results = Invoke-Fleet $hosts "oras://$($O.proxy)/lab/cold:latest"
        foreach ($r in $results) { $r.ExitCode | Should -Be 0 -Because $r.Err }
        $gets = Get-OriginBlobGets $O $cold.digest
        Write-Host "Cold concurrent fan-out of 4 targets through the pull-through cache: $gets origin GETs of the image blob."
        Set-Content -LiteralPath (Join-Path ([IO.Path]::GetTempPath()) 'orasstaging-mirrors-cold-figure.txt') -Value $gets
        # Not bounded by this test: distribution 2.8 may fetch once per concurrent cold request (see the README).
        $gets | Should -BeGreaterOrEqual 1
    }

    It 'falls back to the origin when the mirror is stopped halfway through the fleet, and every target verifies' {
        $mirror = Start-TestRegistry -ProxyRemoteUrl $O.proxyUrl
        try {
            $conf = New-MirrorConf $mirror.proxy
            $first = 1..2 | ForEach-Object { New-TargetHost "halfway-a$_" $conf }
            Assert-Staged (Invoke-Fleet $first $Ref) -From "mirror $($mirror.proxy)/lab/fleet"
        }
        finally { Stop-TestRegistry $mirror }

        Reset-ProxyStats -Registry $O
        $rest = 1..2 | ForEach-Object { New-TargetHost "halfway-b$_" $conf }
        Assert-Staged (Invoke-Fleet $rest $Ref) -From "origin $($O.proxy)/lab/fleet"
        Get-OriginBlobGets $O $Pub.digest | Should -Be 2
    }
}

Describe 'Mirror sources' {
    It '-Mirror serves the blob; Resolve-OrasImage lists the sources in order and the receipt says where the blob came from' {
        $image = Resolve-OrasImage $Ref -Mirror $M.proxy
        @($image.Sources.Kind) | Should -Be @('Mirror', 'Origin')
        $image.Sources[0].Reference.Registry | Should -Be $M.proxy
        $image.Sources[0].Roles.ToString() | Should -Be 'Manifest, Blob'
        $image.Sources[1].Roles.ToString() | Should -Be 'ResolveTag, Manifest, Blob'
        $image.Registry | Should -Be $O.proxy

        Reset-ProxyStats -Registry $M
        $target = Join-Path (New-Folder 'adhoc') 'disk.qcow2'
        $null = Install-DiskImageFromOras $Ref -Path $target -Mirror $M.proxy -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "mirror $($M.proxy)/lab/fleet"
        @((Get-ProxyStats -Registry $M).requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$($Pub.digest)" }).Count | Should -Be 1
    }

    It 'skips a mirror that is down, with a Verbose line, and takes the blob from the origin' {
        $dead = "127.0.0.1:$(Get-DeadPort)"
        $target = Join-Path (New-Folder 'dead') 'disk.qcow2'
        $out = Install-DiskImageFromOras $Ref -Path $target -Mirror $dead -RetryIntervalSec 0 -Verbose -ErrorAction Stop 4>&1
        $verbose = ($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n"
        $verbose | Should -Match ([regex]::Escape("Skipping mirror $dead/lab/fleet"))
        (Get-Receipt $target).blobSource | Should -Be "origin $($O.proxy)/lab/fleet"
    }

    It 'skips a mirror that answers 404 (not a cache of this origin)' {
        $other = Start-TestRegistry
        try {
            $target = Join-Path (New-Folder 'notfound') 'disk.qcow2'
            $null = Install-DiskImageFromOras $Ref -Path $target -Mirror $other.proxy -RetryIntervalSec 0 -ErrorAction Stop
            (Get-Receipt $target).blobSource | Should -Be "origin $($O.proxy)/lab/fleet"
        }
        finally { Stop-TestRegistry $other }
    }

    It 'resumes from the origin when a mirror drops the connection mid-blob' {
        Set-ProxyFault -Registry $M -Kind Cut -AfterBytes 100000 -PathContains $Pub.digest
        try {
            Reset-ProxyStats -Registry $O
            $target = Join-Path (New-Folder 'cut') 'disk.qcow2'
            $null = Install-DiskImageFromOras $Ref -Path $target -Mirror $M.proxy -RetryIntervalSec 0 -ErrorAction Stop
            (Get-Receipt $target).blobSource | Should -Be "mirror $($M.proxy)/lab/fleet, then origin $($O.proxy)/lab/fleet"
            (Get-Content -Raw "$target.digest").Trim() | Should -Be $Pub.digest
            @((Get-ProxyStats -Registry $O).requests | Where-Object { $_.path -like "*/blobs/$($Pub.digest)" -and $_.range }).Count | Should -Be 1
        }
        finally { Clear-ProxyFault -Registry $M }
    }

    It 'fails only when every source fails, naming each' {
        $dead = "127.0.0.1:$(Get-DeadPort)"
        Set-ProxyFault -Registry $O -Kind ServiceUnavailable -Times -1 -PathContains $Pub.digest
        try {
            $dest = New-Folder 'allfail'
            $err = $null
            $null = Save-OrasBlob $Ref $dest -Mirror $dead -MaximumRetryCount 0 -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
            $err | Should -HaveCount 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'RegistryUnavailable,*'
            $err[0].Exception.Message | Should -Match ([regex]::Escape("mirror $dead/lab/fleet"))
            $err[0].Exception.Message | Should -Match ([regex]::Escape($O.proxy))
        }
        finally { Clear-ProxyFault -Registry $O }
    }

    It 'takes everything from the mirror for a pinned digest: the origin sees no request' {
        $pinned = "oras://$($O.proxy)/lab/fleet@$($Pub.manifestDigest)"
        $null = Save-OrasBlob $pinned (New-Folder 'pinned-warm') -Mirror $M.proxy -ErrorAction Stop
        Reset-ProxyStats -Registry $O
        $target = Join-Path (New-Folder 'pinned') 'disk.qcow2'
        $null = Install-DiskImageFromOras $pinned -Path $target -Mirror $M.proxy -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "mirror $($M.proxy)/lab/fleet"
        (Get-ProxyStats -Registry $O).totalRequests | Should -Be 0
    }
}

Describe 'registries.conf' {
    BeforeAll {
        $script:SavedConf = $env:CONTAINERS_REGISTRIES_CONF
        function script:New-Conf([string] $Name, [string] $Text) {
            $path = Join-Path $Work $Name
            Set-Content -LiteralPath $path -Value $Text
            $path
        }
    }
    AfterEach { $env:CONTAINERS_REGISTRIES_CONF = $SavedConf }

    It 'is read from CONTAINERS_REGISTRIES_CONF, and -RegistryConfigPath overrides it' {
        $env:CONTAINERS_REGISTRIES_CONF = New-Conf 'env.conf' (New-MirrorConf $M.proxy)
        $image = Resolve-OrasImage $Ref
        @($image.Sources | ForEach-Object { "$($_.Kind) $($_.Reference.Registry)" }) | Should -Be @("Mirror $($M.proxy)", "Origin $($O.proxy)")
        $image.Sources[0].Insecure | Should -BeTrue
        $target = Join-Path (New-Folder 'envconf') 'disk.qcow2'
        $null = Install-DiskImageFromOras $Ref -Path $target -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "mirror $($M.proxy)/lab/fleet"

        $empty = New-Conf 'empty.conf' ''
        @((Resolve-OrasImage $Ref -RegistryConfigPath $empty).Sources.Kind) | Should -Be @('Origin')
    }

    It 'rewrites the origin with location' {
        # The reference names a registry that does not exist; the config sends it to the test origin.
        $conf = New-Conf 'rewrite.conf' @"
[[registry]]
prefix = "lab.example.com/images"
location = "$($O.proxy)/lab"
"@
        $image = Resolve-OrasImage 'oras://lab.example.com/images/fleet:latest' -RegistryConfigPath $conf -PlainHttp
        $image.Registry | Should -Be $O.proxy
        $image.Repository | Should -Be 'lab/fleet'
        $image.Digest | Should -Be $Pub.digest
    }

    It 'honours pull-from-mirror: digest-only mirrors serve pinned pulls only, tag-only mirrors tag pulls only' {
        $digestOnly = New-Conf 'digest-only.conf' ((New-MirrorConf $M.proxy) + "`npull-from-mirror = `"digest-only`"")
        $tagOnly = New-Conf 'tag-only.conf' ((New-MirrorConf $M.proxy) + "`npull-from-mirror = `"tag-only`"")
        $pinned = "oras://$($O.proxy)/lab/fleet@$($Pub.manifestDigest)"

        @((Resolve-OrasImage $Ref -RegistryConfigPath $digestOnly).Sources.Kind) | Should -Be @('Origin')
        @((Resolve-OrasImage $pinned -RegistryConfigPath $digestOnly).Sources.Kind) | Should -Be @('Mirror', 'Origin')
        $tag = Resolve-OrasImage $Ref -RegistryConfigPath $tagOnly
        @($tag.Sources.Kind) | Should -Be @('Mirror', 'Origin')
        $tag.Sources[0].Roles.ToString() | Should -Be 'ResolveTag, Manifest, Blob'
        @((Resolve-OrasImage $pinned -RegistryConfigPath $tagOnly).Sources.Kind) | Should -Be @('Origin')

        $target = Join-Path (New-Folder 'digestonly') 'disk.qcow2'
        $null = Install-DiskImageFromOras $pinned -Path $target -RegistryConfigPath $digestOnly -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "mirror $($M.proxy)/lab/fleet"
        $target = Join-Path (New-Folder 'digestonly-tag') 'disk.qcow2'
        $null = Install-DiskImageFromOras $Ref -Path $target -RegistryConfigPath $digestOnly -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "origin $($O.proxy)/lab/fleet"
    }

    It 'refuses a blocked registry before any request' {
        $conf = New-Conf 'blocked.conf' @"
[[registry]]
prefix = "$($O.proxy)/lab"
location = "$($O.proxy)/lab"
blocked = true
"@
        Reset-ProxyStats -Registry $O
        { Resolve-OrasImage $Ref -RegistryConfigPath $conf -ErrorAction Stop } |
            Should -Throw -ErrorId 'AccessDenied,OrasStaging.Commands.ResolveOrasImageCommand'
        $err = $null
        $null = Install-DiskImageFromOras $Ref -Path (Join-Path (New-Folder 'blocked') 'disk.qcow2') -RegistryConfigPath $conf -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'blocked'
        (Get-ProxyStats -Registry $O).totalRequests | Should -Be 0
    }

    It 'reports a registries.conf that is missing or broken as a config error' {
        { Resolve-OrasImage $Ref -RegistryConfigPath (Join-Path $Work 'nope.conf') -ErrorAction Stop } | Should -Throw
        $broken = New-Conf 'broken.conf' '[[registry]' 
        { Resolve-OrasImage $Ref -RegistryConfigPath $broken -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigInvalid,OrasStaging.Commands.ResolveOrasImageCommand'
    }

    It 'rejects a -Mirror that is not host[:port][/path]' {
        { Resolve-OrasImage $Ref -Mirror 'ftp://x y' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,OrasStaging.Commands.ResolveOrasImageCommand'
    }
}

Describe 'Credentials per host' {
    BeforeAll {
        # A mirror that wants its own Basic credentials; the origin is anonymous.
        $script:BM = Start-TestRegistry -Auth basic -ProxyRemoteUrl $O.proxyUrl
        $script:SavedDockerConfig = $env:DOCKER_CONFIG
    }
    AfterAll {
        Stop-TestRegistry $BM
        $env:DOCKER_CONFIG = $SavedDockerConfig
    }

    It 'sends -Credential to the origin only: the mirror refuses it, so the blob comes from the origin' {
        $cred = [pscredential]::new($BM.username, (ConvertTo-SecureString $BM.password -AsPlainText -Force))
        Reset-ProxyStats -Registry $BM
        $target = Join-Path (New-Folder 'cred-origin') 'disk.qcow2'
        $null = Install-DiskImageFromOras $Ref -Path $target -Mirror $BM.proxy -Credential $cred -RetryIntervalSec 0 -ErrorAction Stop
        (Get-Receipt $target).blobSource | Should -Be "origin $($O.proxy)/lab/fleet"
        @((Get-ProxyStats -Registry $BM).requests | Where-Object { $_.authorization }).Count | Should -Be 0
    }

    It "uses the mirror's own entry in docker's config for the mirror" {
        $docker = New-Folder 'docker-mirror'
        $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($BM.username):$($BM.password)"))
        Set-Content -LiteralPath (Join-Path $docker 'config.json') -Value (@{ auths = @{ $BM.proxy = @{ auth = $auth } } } | ConvertTo-Json -Depth 4)
        $env:DOCKER_CONFIG = $docker
        try {
            $target = Join-Path (New-Folder 'cred-mirror') 'disk.qcow2'
            $null = Install-DiskImageFromOras $Ref -Path $target -Mirror $BM.proxy -ErrorAction Stop
            (Get-Receipt $target).blobSource | Should -Be "mirror $($BM.proxy)/lab/fleet"
        }
        finally { $env:DOCKER_CONFIG = $SavedDockerConfig }
    }
}
