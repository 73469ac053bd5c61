#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Resolve-OrasImage against the real loopback registry (distribution 2.8) in every auth mode, plus the fault proxy.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("resolve-tests-" + [guid]::NewGuid().ToString('n'))
    $null = New-Item -ItemType Directory -Path $Work
    $script:Image = Join-Path $Work 'debian.raw'
    New-TestDiskImage -Path $Image -Size 4MB -Seed 3
    $script:Id = 'OrasStaging.Commands.ResolveOrasImageCommand'
    # No stored credentials from the machine running the tests.
    $script:OldDockerConfig = $env:DOCKER_CONFIG
    $env:DOCKER_CONFIG = Join-Path $Work 'no-docker'
    $script:OldCache = $env:WITHCACHE_SERVER
    $env:WITHCACHE_SERVER = $null
}

AfterAll {
    $env:DOCKER_CONFIG = $OldDockerConfig
    $env:WITHCACHE_SERVER = $OldCache
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Resolve-OrasImage (anonymous registry)' {
    BeforeAll {
        $script:R = Start-TestRegistry -Auth anonymous
        $script:P = Publish-TestImage -Registry $R -Repository lab/debian -Tag latest -ImagePath $Image
        $script:Multi = Publish-TestImage -Registry $R -Repository lab/multi -Tag latest -ImagePath $Image -Index
        $script:Helm = Publish-TestImage -Registry $R -Repository lab/chart -Tag '1.0' -Helm
    }
    AfterAll { Stop-TestRegistry $R }

    It 'resolves a tag to the manifest digest and the chosen layer' {
        $o = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest" -PlainHttp
        $o | Should -BeOfType ([OrasStaging.OrasImage])
        $o.ManifestDigest | Should -Be $P.manifestDigest
        $o.Digest | Should -Be $P.digest
        $o.Size | Should -Be $P.size
        $o.Title | Should -Be $P.title
        $o.MediaType | Should -Be $P.mediaType
        $o.ArtifactType | Should -Be $P.artifactType
        $o.PinnedKind | Should -Be 'None'
        $o.Registry | Should -Be $R.registry
        $o.Repository | Should -Be 'lab/debian'
        $o.Tag | Should -Be 'latest'
        $o.BlobUri | Should -Be "http://$($R.registry)/v2/lab/debian/blobs/$($P.digest)"
        @($o.Layers).Count | Should -Be 3
    }

    It 'falls back to plain http on a loopback registry that does not speak TLS and checks the sidecar (Verbose)' {
        $verbose = Resolve-OrasImage "$($R.registry)/lab/debian:latest" -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        # Asked over https first (once per registry and session), then over http.
        ($verbose.Message -join "`n") | Should -Match 'over http\.|does not speak TLS; using plain http'
        ($verbose.Message -join "`n") | Should -Match 'sidecar .* agrees'
    }

    It 'tells a pinned manifest digest from a pinned blob digest (distribution answers 500 for the latter)' {
        $m = Resolve-OrasImage "oras://$($R.registry)/lab/debian@$($P.manifestDigest)"
        $m.PinnedKind | Should -Be 'Manifest'
        $m.Digest | Should -Be $P.digest
        $b = Resolve-OrasImage "oras://$($R.registry)/lab/debian@$($P.digest)"
        $b.PinnedKind | Should -Be 'Blob'
        $b.Digest | Should -Be $P.digest
        $b.Size | Should -Be $P.size
        $b.ManifestDigest | Should -BeNullOrEmpty
        $t = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest@$($P.digest)"
        $t.PinnedKind | Should -Be 'Blob'
        $t.Title | Should -Be $P.title
    }

    It 'takes the platform from an index, with and without -Platform' {
        $arm = Resolve-OrasImage "oras://$($R.registry)/lab/multi:latest" -Platform linux/arm64
        $arm.Platform | Should -Match '^linux/arm64'
        $amd = Resolve-OrasImage "oras://$($R.registry)/lab/multi:latest" -Platform linux/amd64
        $amd.Platform | Should -Be 'linux/amd64'
        $arm.ManifestDigest | Should -Not -Be $amd.ManifestDigest
        $hostArch = switch ([System.Runtime.InteropServices.RuntimeInformation]::OSArchitecture) { 'X64' { 'amd64' } 'Arm64' { 'arm64' } default { 'other' } }
        if ($hostArch -ne 'other') {
            (Resolve-OrasImage "oras://$($R.registry)/lab/multi:latest").Platform | Should -Match "^linux/$hostArch"
        }
        { Resolve-OrasImage "oras://$($R.registry)/lab/multi:latest" -Platform linux/s390x -ErrorAction Stop } |
            Should -Throw -ErrorId "PlatformAmbiguous,$Id"
    }

    It 'binds references from the pipeline, by value and by property name (alias Url)' {
        $refs = @("oras://$($R.registry)/lab/debian:latest", "oras://$($R.registry)/lab/debian@$($P.digest)")
        @($refs | Resolve-OrasImage).Count | Should -Be 2
        ([pscustomobject]@{ Url = $refs[0] } | Resolve-OrasImage).Digest | Should -Be $P.digest
        ([pscustomobject]@{ Reference = $refs[1] } | Resolve-OrasImage).PinnedKind | Should -Be 'Blob'
    }

    It 'reports an unknown tag as ManifestNotFound and keeps going with the next reference' {
        { Resolve-OrasImage "oras://$($R.registry)/lab/debian:nope" -ErrorAction Stop } | Should -Throw -ErrorId "ManifestNotFound,$Id"
        $out = Resolve-OrasImage "oras://$($R.registry)/lab/debian:nope", "oras://$($R.registry)/lab/debian:latest" -ErrorVariable errs -ErrorAction SilentlyContinue
        @($out).Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be "ManifestNotFound,$Id"
        $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'reports a manifest that is a JSON array as RegistryProtocolError and goes on with the next reference' {
        # A tiny loopback "registry" whose only manifest is valid JSON of the wrong shape.
        # A random port may be taken (other helpers' servers share the machine): try a few.
        for ($try = 0; ; $try++) {
            $listener = [System.Net.HttpListener]::new()
            $port = Get-Random -Minimum 20000 -Maximum 60000
            $listener.Prefixes.Add("http://127.0.0.1:$port/")
            try { $listener.Start(); break }
            catch { if ($try -ge 20) { throw } }
        }
        $job = Start-ThreadJob -ScriptBlock {
            param($Listener)
            while ($Listener.IsListening) {
                try { $ctx = $Listener.GetContext() } catch { break }
                $body = [Text.Encoding]::UTF8.GetBytes('[]')
                if ($ctx.Request.Url.AbsolutePath -like '/v2/*/manifests/*') {
                    $ctx.Response.ContentType = 'application/vnd.oci.image.manifest.v1+json'
                }
                $ctx.Response.ContentLength64 = $body.Length
                if ($ctx.Request.HttpMethod -ne 'HEAD') { $ctx.Response.OutputStream.Write($body, 0, $body.Length) }
                $ctx.Response.Close()
            }
        } -ArgumentList $listener
        try {
            $errs = $null
            $out = Resolve-OrasImage "oras://127.0.0.1:$port/lab/odd:latest", "oras://$($R.registry)/lab/debian:latest" -ErrorVariable errs -ErrorAction SilentlyContinue
        }
        finally {
            $listener.Stop(); $listener.Close()
            $job | Wait-Job -Timeout 10 | Out-Null
            $job | Remove-Job -Force
        }
        @($out).Count | Should -Be 1
        $out.Digest | Should -Be $P.digest
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be "RegistryProtocolError,$Id"
        $errs[0].CategoryInfo.Category | Should -Be 'ProtocolError'
        $errs[0].TargetObject | Should -Be "oras://127.0.0.1:$port/lab/odd:latest"
    }

    It 'refuses malformed references with ReferenceInvalid (<Ref>)' -ForEach @(
        @{ Ref = 'oras://127.0.0.1:5000/lab/debian' }
        @{ Ref = 'oras://127.0.0.1:5000/Lab/Debian:latest' }
        @{ Ref = 'oras://127.0.0.1:5000/lab/debian@sha256:1234' }
        @{ Ref = 'https://127.0.0.1:5000/lab/debian:latest' }
        @{ Ref = 'oras://127.0.0.1:5000/lab/debian:bad tag' }
    ) {
        { Resolve-OrasImage $Ref -ErrorAction Stop } | Should -Throw -ErrorId "ReferenceInvalid,$Id"
    }

    It 'suggests :latest when the tag is missing' {
        $null = Resolve-OrasImage "oras://$($R.registry)/lab/debian" -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].Exception.Message | Should -Match ':latest'
        $errs[0].ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
    }

    It 'refuses an artifact without a disk-image layer (a Helm chart) with NoImageLayer' {
        { Resolve-OrasImage "oras://$($R.registry)/lab/chart:1.0" -ErrorAction Stop } | Should -Throw -ErrorId "NoImageLayer,$Id"
        (Resolve-OrasImage "oras://$($R.registry)/lab/chart:1.0" -LayerMediaType '*helm*').MediaType | Should -Match 'helm'
    }

    It 'honours -LayerTitle' {
        (Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest" -LayerTitle '*.sha256').Digest | Should -Be $P.sidecarDigest
    }

    It 'retries 429 (Retry-After) and 503 on the manifest through the proxy' {
        Set-ProxyFault -Registry $R -Kind TooManyRequests -RetryAfter 1 -Times 1 -Target Manifest | Out-Null
        Set-ProxyFault -Registry $R -Kind ServiceUnavailable -Times 1 -Target Manifest | Out-Null
        try {
            $verbose = Resolve-OrasImage "oras://$($R.proxy)/lab/debian:latest" -RetryIntervalSec 0 -Verbose 4>&1
            $image = $verbose | Where-Object { $_ -is [OrasStaging.OrasImage] }
            $image.Digest | Should -Be $P.digest
            $text = ($verbose | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n"
            $text | Should -Match 'HTTP 429.*Retry-After 1 s'
            $text | Should -Match 'HTTP 503'
        }
        finally { Clear-ProxyFault -Registry $R }
    }

    It 'gives up on a registry that keeps failing with RegistryUnavailable' {
        Set-ProxyFault -Registry $R -Kind ServiceUnavailable -Times -1 -Target Manifest | Out-Null
        try {
            { Resolve-OrasImage "oras://$($R.proxy)/lab/debian:latest" -MaximumRetryCount 1 -RetryIntervalSec 0 -ErrorAction Stop } |
                Should -Throw -ErrorId "RegistryUnavailable,$Id"
        }
        finally { Clear-ProxyFault -Registry $R }
    }
}

Describe 'Resolve-OrasImage with <Mode> auth' -ForEach @(
    @{ Mode = 'basic'; Tls = $false }
    @{ Mode = 'token'; Tls = $false }
    @{ Mode = 'token'; Tls = $true }
) {
    BeforeAll {
        $script:A = Start-TestRegistry -Auth $Mode -Tls:$Tls
        $script:AP = Publish-TestImage -Registry $A -Repository lab/debian -ImagePath $Image
        $script:Private = Publish-TestImage -Registry $A -Repository $A.privateRepository -ImagePath $Image
        $script:Good = [pscredential]::new($A.username, (ConvertTo-SecureString $A.password -AsPlainText -Force))
        $script:Bad = [pscredential]::new($A.username, (ConvertTo-SecureString 'wrong-password' -AsPlainText -Force))
        $script:Common = @{ SkipCertificateCheck = [bool]$Tls }
        if (-not $Tls) { $Common.PlainHttp = $true }
    }
    AfterAll { Stop-TestRegistry $A }

    It 'resolves with the right credentials' {
        $o = Resolve-OrasImage "oras://$($A.registry)/lab/debian:latest" -Credential $Good @Common
        $o.Digest | Should -Be $AP.digest
        (Resolve-OrasImage "oras://$($A.registry)/$($A.privateRepository):latest" -Credential $Good @Common).Digest | Should -Be $Private.digest
    }

    It 'refuses wrong credentials with AuthenticationFailed and never echoes the password' {
        $null = Resolve-OrasImage "oras://$($A.registry)/$($A.privateRepository):latest" -Credential $Bad @Common -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -Be "AuthenticationFailed,$Id"
        $errs[0].CategoryInfo.Category | Should -Be 'AuthenticationError'
        ($errs[0] | Out-String) | Should -Not -Match 'wrong-password'
    }

    It 'needs credentials for the private repository' {
        { Resolve-OrasImage "oras://$($A.registry)/$($A.privateRepository):latest" @Common -ErrorAction Stop } |
            Should -Throw -ErrorId "AuthenticationFailed,$Id"
    }

    It 'reads credentials from a docker config.json' {
        $dir = Join-Path $Work "docker-$Mode-$Tls"
        $null = New-Item -ItemType Directory -Path $dir -Force
        $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($A.username):$($A.password)"))
        @{ auths = @{ $A.registry = @{ auth = $auth } } } | ConvertTo-Json -Depth 5 | Set-Content (Join-Path $dir 'config.json')
        $env:DOCKER_CONFIG = $dir
        try {
            (Resolve-OrasImage "oras://$($A.registry)/$($A.privateRepository):latest" @Common).Digest | Should -Be $Private.digest
        }
        finally { $env:DOCKER_CONFIG = Join-Path $Work 'no-docker' }
    }

    It 'falls back to anonymous when stored credentials are refused on a public repository' -Skip:($Mode -ne 'token') {
        $dir = Join-Path $Work "docker-stale-$Tls"
        $null = New-Item -ItemType Directory -Path $dir -Force
        $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($A.username):expired-token"))
        @{ auths = @{ $A.registry = @{ auth = $auth } } } | ConvertTo-Json -Depth 5 | Set-Content (Join-Path $dir 'config.json')
        $env:DOCKER_CONFIG = $dir
        try {
            $out = Resolve-OrasImage "oras://$($A.registry)/lab/debian:latest" @Common -Verbose 4>&1
            ($out | Where-Object { $_ -is [OrasStaging.OrasImage] }).Digest | Should -Be $AP.digest
            (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'trying anonymously'
        }
        finally { $env:DOCKER_CONFIG = Join-Path $Work 'no-docker' }
    }
}
