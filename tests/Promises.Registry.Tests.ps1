#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# README registry promises through the cmdlets against the real registry and the TestKit's fault proxy (issue 16):
# OperationTimeout when the registry stops sending; Save-OrasBlob's size check apart from its digest check;
# hostile layer titles refused end to end; the real registry's own token expiry; docker's identitytoken.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path $TestDrive 'registry'
    $null = New-Item -ItemType Directory -Path $Work
    $script:Image = Join-Path $Work 'src.raw'
    $null = New-TestDiskImage -Path $Image -Size 2MB -Seed 11
    $script:SaveId = 'OrasStaging.Commands.SaveOrasBlobCommand'
    $script:InstallId = 'OrasStaging.Commands.InstallDiskImageFromOrasCommand'

    function script:New-Dest([string] $Name) {
        $d = Join-Path $Work $Name
        $null = New-Item -ItemType Directory -Path $d -Force
        $d
    }
    function script:Get-Sha([string] $Path) { 'sha256:' + (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() }
    function script:Get-Listing([string] $Folder) { @(Get-ChildItem -LiteralPath $Folder -Force -Recurse | ForEach-Object Name | Sort-Object) }
}

Describe 'OperationTimeout' {
    BeforeAll {
        $script:R = Start-TestRegistry
        $script:P = Publish-TestImage -Registry $R -Repository lab/stall -ImagePath $Image
    }
    AfterAll {
        Clear-ProxyFault -Registry $R
        Stop-TestRegistry $R
    }

    It 'a registry that stops sending mid-blob ends Save-OrasBlob with OperationTimeout once the retries are used up, and keeps the partial to resume' {
        # The proxy sends the headers and 64 KiB, then nothing, until the faults are cleared: the module's stall
        # timeout (30 s without a byte) is certain to run out, and -MaximumRetryCount 0 makes that the end.
        Set-ProxyFault -Registry $R -Kind Stall -AfterBytes 65536 -Times -1 -PathContains $P.digest | Out-Null
        $dest = New-Dest 'stall'
        $err = $null
        try {
            $file = Save-OrasBlob "oras://$($R.proxy)/lab/stall:latest" $dest -CacheServer '' -MaximumRetryCount 0 -RetryIntervalSec 0 `
                -ErrorVariable err -ErrorAction SilentlyContinue
        }
        finally { Clear-ProxyFault -Registry $R }
        $file | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be "OperationTimeout,$SaveId"
        $err[0].CategoryInfo.Category | Should -Be 'OperationTimeout'
        $err[0].Exception.Message | Should -Match 'no answer in time'
        (Get-ProxyStats -Registry $R).faultsFired.stall | Should -BeGreaterOrEqual 1
        $partial = @(Get-ChildItem -LiteralPath $dest -Force -Filter '*.partial')
        $partial.Count | Should -Be 1 -Because 'a timeout is not a digest failure: what arrived is kept for the next run'

        # The next run resumes from the kept part (a Range request) and completes.
        Reset-ProxyStats -Registry $R
        $file = Save-OrasBlob "oras://$($R.proxy)/lab/stall:latest" $dest -CacheServer ''
        if ($partial[0].Length -gt 0) { (Get-ProxyStats -Registry $R).rangeHeaders | Should -BeGreaterOrEqual 1 }
        Get-Sha $file.FullName | Should -Be $P.digest
    }
}

Describe 'Save-OrasBlob size and title checks against the registry' {
    BeforeAll {
        $script:R = Start-TestRegistry
        $script:P = Publish-TestImage -Registry $R -Repository lab/sizes -ImagePath $Image
        $script:Resolved = Resolve-OrasImage "oras://$($R.proxy)/lab/sizes:latest"
        function script:New-ImageObject([long] $Size) {
            # The object Resolve-OrasImage returns, with only its size changed: a manifest that names a blob of
            # a different length than the registry serves.
            [OrasStaging.OrasImage]@{
                Reference = $Resolved.Reference; Registry = $Resolved.Registry; Repository = $Resolved.Repository
                Digest = $Resolved.Digest; Size = $Size; MediaType = $Resolved.MediaType; Title = $Resolved.Title
            }
        }
    }
    AfterAll {
        Clear-ProxyFault -Registry $R
        Stop-TestRegistry $R
    }

    It 'a blob longer or shorter than its size is refused by the size check, with the right digest, before any byte is kept (<Delta>)' -ForEach @(
        @{ Delta = 1 }, @{ Delta = -1 }
    ) {
        $Resolved.Size | Should -Be $P.size
        $dest = New-Dest "size$Delta"
        $err = $null
        $file = New-ImageObject ($P.size + $Delta) | Save-OrasBlob -DestinationPath $dest -CacheServer '' -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
        $file | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be "DigestMismatch,$SaveId"
        # The size check's own message (the registry's length against the manifest's), not the digest check's.
        $err[0].Exception.Message | Should -Match 'but the manifest says'
        $err[0].Exception.Message | Should -Not -Match 'hashes to'
        Get-Listing $dest | Should -BeNullOrEmpty
    }

    It 'a blob of the right size with one wrong byte is refused by the digest check, with its own message' {
        Set-ProxyFault -Registry $R -Kind Corrupt -Offset 5000 -Times -1 -PathContains $P.digest | Out-Null
        try {
            $dest = New-Dest 'digest'
            $err = $null
            $file = New-ImageObject $P.size | Save-OrasBlob -DestinationPath $dest -CacheServer '' -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
        }
        finally { Clear-ProxyFault -Registry $R }
        $file | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be "DigestMismatch,$SaveId"
        $err[0].Exception.Message | Should -Match 'hashes to'
        $err[0].Exception.Message | Should -Not -Match 'manifest says'
        Get-Listing $dest | Should -BeNullOrEmpty
    }

    It 'a layer title <Title> is refused with InvalidTitle and nothing is written, inside or outside the destination' -ForEach @(
        @{ Title = 'C:evil.img.gz'; Repo = 'lab/title-drive' }
        @{ Title = 'sub/evil.img.gz'; Repo = 'lab/title-slash' }
        @{ Title = 'sub\evil.img.gz'; Repo = 'lab/title-backslash' }
        @{ Title = 'evil|pipe.img.gz'; Repo = 'lab/title-pipe' }
        @{ Title = 'evil<>.img.gz'; Repo = 'lab/title-angle' }
        @{ Title = 'x..y.img.gz'; Repo = 'lab/title-dots' }
    ) {
        $null = Publish-TestImage -Registry $R -Repository $Repo -ImagePath $Image -Title $Title
        $root = New-Dest "title-$($Repo -replace '.*/')"
        $dest = Join-Path $root 'inner'
        $null = New-Item -ItemType Directory $dest
        Push-Location $root
        try {
            $err = $null
            $file = Save-OrasBlob "oras://$($R.proxy)/${Repo}:latest" $dest -CacheServer '' -ErrorVariable err -ErrorAction SilentlyContinue
        }
        finally { Pop-Location }
        $file | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be "InvalidTitle,$SaveId"
        Get-Listing $root | Should -Be @('inner') -Because 'nothing may be written for a refused title'
        # The control: a file path chooses the name, and the same blob saves.
        $file = Save-OrasBlob "oras://$($R.proxy)/${Repo}:latest" (Join-Path $dest 'chosen.gz') -CacheServer ''
        $file.Name | Should -Be 'chosen.gz'
    }
}

Describe 'the real registry''s own token expiry, through Install-DiskImageFromOras' {
    BeforeAll {
        # Strict expiry: the registry itself refuses each token 4 s after issue, while the token server tells
        # the client expires_in 300 (a registry whose clock runs ahead): only the registry's 401 can tell the
        # client that its token is no longer good.
        $script:T = Start-TestRegistry -Auth token -TokenExpiresIn 4 -StrictTokenExpiry -AdvertisedTokenExpiresIn 300
        $script:Noise = (New-TestDiskImage -Path (Join-Path $Work 'noise.raw') -Size 1MB -Seed 12 -Shape Random).FullName
        $script:TP = Publish-TestImage -Registry $T -Repository lab/expiry -ImagePath $Noise
    }
    AfterAll {
        Clear-ProxyFault -Registry $T
        Stop-TestRegistry $T
    }

    It 'a long install whose token the registry refuses mid-way gets a new token and completes' {
        $T.strictTokenExpiry | Should -BeTrue
        $T.advertisedTokenExpiresIn | Should -Be 300
        # The first layer GET is sent slowly (64 KiB/s) and cut at 512 KiB: at least 8 s, twice the token's life
        # at the registry, so the resume certainly carries a token the registry has expired.
        Set-ProxyFault -Registry $T -Kind Throttle -BytesPerSecond 64KB -AfterBytes 512KB -Times 1 -PathContains $TP.digest | Out-Null
        Reset-ProxyStats -Registry $T
        $target = Join-Path (New-Dest 'expiry') 'disk.img'
        $result = Install-DiskImageFromOras "oras://$($T.proxy)/lab/expiry:latest" -Path $target -CacheServer '' -RetryIntervalSec 0
        $result.Skipped | Should -BeFalse
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $TP.rawSha256

        $stats = Get-ProxyStats -Registry $T
        $stats.faultsFired.throttle | Should -Be 1
        $layer = @($stats.requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$($TP.digest)" })
        # The registry's own refusal: a 401 to a request that carried a token, with no proxy fault behind it.
        $refused = @($layer | Where-Object { $_.status -eq 401 -and $_.authorization -and -not $_.fault })
        $refused.Count | Should -BeGreaterOrEqual 1 -Because "the registry must have refused the expired token: $($layer | Out-String)"
        $last = $layer[-1]
        $last.status | Should -Be 206 -Because 'the download resumed with a new token after the refusal'
        $last.authorization | Should -BeTrue
        $last.startedMs | Should -BeGreaterThan $refused[0].startedMs
        $stats.tokenRequestsGranted | Should -BeGreaterOrEqual 2 -Because 'a new token was fetched after the refusal'
    }
}

Describe 'docker''s identitytoken, traded at the real token server' {
    BeforeAll {
        $script:I = Start-TestRegistry -Auth token
        $script:IP = Publish-TestImage -Registry $I -Repository $I.privateRepository -ImagePath $Image
        $script:IRef = "oras://$($I.proxy)/$($I.privateRepository):latest"
        $script:SavedDockerConfig = $env:DOCKER_CONFIG
        function script:Set-DockerConfig([string] $Name, [string] $IdentityToken) {
            $dir = New-Dest "docker-$Name"
            # As `docker login` writes it for an identity token: the user name in auth, the token beside it.
            $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($I.username):"))
            @{ auths = @{ $I.proxy = @{ auth = $auth; identitytoken = $IdentityToken } } } | ConvertTo-Json -Depth 5 |
                Set-Content (Join-Path $dir 'config.json')
            $env:DOCKER_CONFIG = $dir
        }
    }
    AfterAll {
        $env:DOCKER_CONFIG = $SavedDockerConfig
        Stop-TestRegistry $I
    }
    AfterEach { $env:DOCKER_CONFIG = $SavedDockerConfig }

    It 'stages a private image with only an identitytoken in config.json, through the OAuth2 refresh_token grant' {
        $I.refreshToken | Should -Not -BeNullOrEmpty
        Set-DockerConfig 'good' $I.refreshToken
        Reset-ProxyStats -Registry $I
        $target = Join-Path (New-Dest 'identity') 'disk.img'
        $result = Install-DiskImageFromOras $IRef -Path $target -CacheServer '' -RetryIntervalSec 0
        $result.Skipped | Should -BeFalse
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $IP.rawSha256
        $stats = Get-ProxyStats -Registry $I
        $stats.tokenPostsByGrantType.refresh_token | Should -BeGreaterOrEqual 1
        $stats.tokenRequestsGranted | Should -BeGreaterOrEqual 1
    }

    It 'a wrong identitytoken gets no access to the private repository' {
        Set-DockerConfig 'bad' 'rt-not-the-one'
        Reset-ProxyStats -Registry $I
        $target = Join-Path (New-Dest 'identity-bad') 'disk.img'
        $err = $null
        $result = Install-DiskImageFromOras $IRef -Path $target -CacheServer '' -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
        $result | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Match '^(AuthenticationFailed|AccessDenied),'
        (Get-ProxyStats -Registry $I).tokenPostsByGrantType.refresh_token | Should -BeGreaterOrEqual 1
        Test-Path $target | Should -BeFalse
    }
}

Describe 'Install-DiskImageFromOras -CacheServer (withcache), token registry' {
    BeforeAll {
        $script:C = Start-TestRegistry -Auth token
        $script:CP = Publish-TestImage -Registry $C -Repository $C.privateRepository -ImagePath $Image
        $script:CRef = "oras://$($C.proxy)/$($C.privateRepository):latest"
        $script:CCred = [pscredential]::new($C.username, (ConvertTo-SecureString $C.password -AsPlainText -Force))
        $script:Cache = Start-TestCacheServer
        # The withcache key from the README's rule (base64url of the blob's registry URL, no padding), computed
        # here, not by the code under test.
        $url = "http://$($C.proxy)/v2/$($C.privateRepository)/blobs/$($CP.digest)"
        $script:Key = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($url)).TrimEnd('=').Replace('+', '-').Replace('/', '_')
        # The blob the cache holds: saved straight from the registry (not through the proxy, whose stats count).
        $script:Blob = Save-OrasBlob "oras://$($C.registry)/$($C.privateRepository):latest" (New-Dest 'cache-src') -Credential $CCred -CacheServer ''
        $script:SavedCache = $env:WITHCACHE_SERVER
    }
    AfterAll {
        $env:WITHCACHE_SERVER = $SavedCache
        Stop-TestCacheServer $Cache
        Stop-TestRegistry $C
    }
    BeforeEach {
        $Cache.Files.Clear()
        while ($Cache.Log.TryDequeue([ref] $null)) { }
        Reset-ProxyStats -Registry $C
    }

    It 'a hit stages from the cache: no layer request to the registry, no credentials to the cache, the image verified' {
        $Cache.Files["/b/$Key/$($CP.digest)"] = $Blob.FullName
        $target = Join-Path (New-Dest 'cache-hit') 'disk.img'
        $result = Install-DiskImageFromOras $CRef -Path $target -Credential $CCred -CacheServer $Cache.Url
        $result.Skipped | Should -BeFalse
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $CP.rawSha256
        [IO.File]::ReadAllText("$target.digest") | Should -BeExactly $CP.digest
        $stats = Get-ProxyStats -Registry $C
        @($stats.requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$($CP.digest)" }).Count | Should -Be 0
        @($stats.requests | Where-Object authorization).Count | Should -BeGreaterThan 0 -Because 'the manifest was fetched with the token, so a credential existed'
        @($Cache.Log) | Should -Contain "GET /b/$Key/$($CP.digest) auth=False"
        @($Cache.Log | Where-Object { $_ -like '*auth=True' }).Count | Should -Be 0
    }

    It 'a miss stages from the registry; -CacheServer '''' turns off WITHCACHE_SERVER' {
        $target = Join-Path (New-Dest 'cache-miss') 'disk.img'
        $null = Install-DiskImageFromOras $CRef -Path $target -Credential $CCred -CacheServer $Cache.Url
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $CP.rawSha256
        @($Cache.Log).Count | Should -BeGreaterThan 0 -Because 'the cache was asked first'
        @((Get-ProxyStats -Registry $C).requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$($CP.digest)" }).Count | Should -BeGreaterThan 0

        $Cache.Files["/b/$Key/$($CP.digest)"] = $Blob.FullName
        while ($Cache.Log.TryDequeue([ref] $null)) { }
        $env:WITHCACHE_SERVER = $Cache.Url
        try {
            $target = Join-Path (New-Dest 'cache-off') 'disk.img'
            $null = Install-DiskImageFromOras $CRef -Path $target -Credential $CCred -CacheServer ''
        }
        finally { $env:WITHCACHE_SERVER = $SavedCache }
        (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $CP.rawSha256
        @($Cache.Log).Count | Should -Be 0 -Because '-CacheServer '''' wins over WITHCACHE_SERVER'
    }
}
