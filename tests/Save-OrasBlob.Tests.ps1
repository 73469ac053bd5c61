#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Save-OrasBlob against the real loopback registry and through the TestKit's fault proxy and CDN.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("save-tests-" + [guid]::NewGuid().ToString('n'))
    $null = New-Item -ItemType Directory -Path $Work
    $script:Image = Join-Path $Work 'debian.raw'
    New-TestDiskImage -Path $Image -Size 8MB -Seed 5
    $script:Id = 'OrasStaging.Commands.SaveOrasBlobCommand'
    $script:OldDockerConfig = $env:DOCKER_CONFIG
    $env:DOCKER_CONFIG = Join-Path $Work 'no-docker'
    $script:OldCache = $env:WITHCACHE_SERVER
    $env:WITHCACHE_SERVER = $null

    function script:New-Dest([string] $Name) {
        $d = Join-Path $Work $Name
        $null = New-Item -ItemType Directory -Path $d -Force
        $d
    }
    function script:Get-Sha([string] $Path) { 'sha256:' + (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() }

    # The withcache key, computed here from the README's rule (base64url of the blob's registry URL, no padding),
    # not by the code under test.
    function script:Get-CacheKey([string] $Scheme, [string] $Authority, [string] $Repository, [string] $Digest) {
        $url = "${Scheme}://$Authority/v2/$Repository/blobs/$Digest"
        [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($url)).TrimEnd('=').Replace('+', '-').Replace('/', '_')
    }

    # The withcache stand-in is TestKit's Start-TestCacheServer.
    function script:Start-CacheStandIn { Start-TestCacheServer }
    function script:Stop-CacheStandIn($Cache) { Stop-TestCacheServer $Cache }
}

AfterAll {
    $env:DOCKER_CONFIG = $OldDockerConfig
    $env:WITHCACHE_SERVER = $OldCache
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Save-OrasBlob (anonymous registry, fault proxy)' {
    BeforeAll {
        $script:R = Start-TestRegistry -Auth anonymous
        $script:P = Publish-TestImage -Registry $R -Repository lab/debian -Tag latest -ImagePath $Image
        $script:ViaProxy = "oras://$($R.proxy)/lab/debian:latest"
    }
    AfterAll { Stop-TestRegistry $R }
    AfterEach { Clear-ProxyFault -Registry $R }

    It 'saves the resolved layer into a folder under its title, verified' {
        $dest = New-Dest 'plain'
        $file = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest" | Save-OrasBlob -DestinationPath $dest
        $file | Should -BeOfType ([IO.FileInfo])
        $file.Name | Should -Be $P.title
        $file.Length | Should -Be $P.size
        Get-Sha $file.FullName | Should -Be $P.digest
        Test-Path "$($file.FullName).partial" | Should -BeFalse
    }

    It 'outputs the file with PSPath, so it pipes literally even from a folder named with brackets' {
        $dest = [IO.Directory]::CreateDirectory((Join-Path $Work 'blobs [1]')).FullName
        $file = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" -DestinationPath $dest
        $file.PSPath | Should -BeLike '*FileSystem::*'
        ($file | Get-Item).FullName | Should -Be (Join-Path $dest $P.title)
        Get-Sha $file.FullName | Should -Be $P.digest
    }

    It 'takes -Reference (a pinned blob digest) and a file path as destination' {
        $dest = Join-Path (New-Dest 'byref') 'chosen.gz'
        $file = Save-OrasBlob -Reference "oras://$($R.registry)/lab/debian@$($P.digest)" -Destination $dest
        $file.FullName | Should -Be $dest
        Get-Sha $dest | Should -Be $P.digest
    }

    It 'names a blob without a title after its digest hex, with .blob' {
        $dest = New-Dest 'notitle'
        $file = Save-OrasBlob "oras://$($R.registry)/lab/debian@$($P.digest)" $dest
        $file.Name | Should -Be ($P.digest.Substring(7) + '.blob')
    }

    It 'skips a file that already holds the digest, refuses a different one without -Force' {
        $dest = New-Dest 'existing'
        $image = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest"
        $null = $image | Save-OrasBlob -DestinationPath $dest
        $verbose = $image | Save-OrasBlob -DestinationPath $dest -Verbose 4>&1
        (($verbose | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'skipping'
        Set-Content -LiteralPath (Join-Path $dest $P.title) -Value 'something else'
        { $image | Save-OrasBlob -DestinationPath $dest -ErrorAction Stop } | Should -Throw -ErrorId "DestinationExists,$Id"
        $file = $image | Save-OrasBlob -DestinationPath $dest -Force
        Get-Sha $file.FullName | Should -Be $P.digest
    }

    It 'writes nothing with -WhatIf' {
        $dest = New-Dest 'whatif'
        Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" $dest -WhatIf | Should -BeNullOrEmpty
        @(Get-ChildItem $dest).Count | Should -Be 0
    }

    It 'survives the connection cut <Times> time(s) mid-blob with identical bytes' -ForEach @(@{ Times = 1 }, @{ Times = 3 }) {
        $dest = New-Dest "cut$Times"
        Reset-ProxyStats -Registry $R
        Set-ProxyFault -Registry $R -Kind Cut -AfterBytes 300000 -Times $Times -PathContains $P.digest | Out-Null
        $out = Save-OrasBlob $ViaProxy $dest -RetryIntervalSec 0 -Verbose 4>&1
        $file = $out | Where-Object { $_ -is [IO.FileInfo] }
        Get-Sha $file.FullName | Should -Be $P.digest
        $stats = Get-ProxyStats -Registry $R
        $stats.faultsFired.cut | Should -Be $Times
        @($stats.rangeHeaders).Count | Should -BeGreaterOrEqual $Times
        (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'Connection lost at'
    }

    It 'waits out 429 with Retry-After and 503' {
        $dest = New-Dest 'busy'
        Set-ProxyFault -Registry $R -Kind TooManyRequests -RetryAfter 1 -Times 1 -PathContains $P.digest | Out-Null
        Set-ProxyFault -Registry $R -Kind ServiceUnavailable -Times 2 -PathContains $P.digest | Out-Null
        $out = Save-OrasBlob $ViaProxy $dest -RetryIntervalSec 0 -Verbose 4>&1
        Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $P.digest
        $text = ($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n"
        $text | Should -Match 'HTTP 429.*Retry-After 1 s'
        $text | Should -Match 'HTTP 503'
    }

    It 'refuses one corrupted byte with DigestMismatch and leaves nothing at the destination' {
        $dest = New-Dest 'corrupt'
        Set-ProxyFault -Registry $R -Kind Corrupt -Offset 123457 -Times 1 -PathContains $P.digest | Out-Null
        { Save-OrasBlob $ViaProxy $dest -ErrorAction Stop } | Should -Throw -ErrorId "DigestMismatch,$Id"
        @(Get-ChildItem $dest -Force).Count | Should -Be 0
    }

    It 'resumes a .partial left by another process, re-hashing the kept prefix' {
        $full = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" (New-Dest 'source')
        $dest = New-Dest 'resume'
        $keep = 400000
        $bytes = [IO.File]::ReadAllBytes($full.FullName)
        [IO.File]::WriteAllBytes((Join-Path $dest "$($P.title).partial"), $bytes[0..($keep - 1)])
        Reset-ProxyStats -Registry $R
        $job = Start-Job -ScriptBlock {
            param($Module, $Ref, $Dest)
            Import-Module $Module
            (Save-OrasBlob $Ref $Dest -CacheServer '').FullName
        } -ArgumentList $env:ORASSTAGING_MODULE, $ViaProxy, $dest
        try {
            $path = $job | Wait-Job -Timeout 120 | Receive-Job -ErrorAction Stop
        }
        finally { $job | Remove-Job -Force }
        $path | Should -Be (Join-Path $dest $P.title)
        Get-Sha $path | Should -Be $P.digest
        $stats = Get-ProxyStats -Registry $R
        @($stats.rangeHeaders) | Should -Contain "bytes=$keep-"
        $stats.blobBytesSent | Should -BeLessThan ($P.size - $keep + 4096)
    }

    It 'stops promptly on Ctrl+C and keeps the .partial for a later run' {
        $dest = New-Dest 'stop'
        Set-ProxyFault -Registry $R -Kind Cut -AfterBytes 200000 -Times -1 -PathContains $P.digest | Out-Null
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                param($Module, $Ref, $Dest)
                Import-Module $Module
                Save-OrasBlob $Ref $Dest -RetryIntervalSec 30 -MaximumRetryCount 10 -Verbose
            }).AddArgument($env:ORASSTAGING_MODULE).AddArgument($ViaProxy).AddArgument($dest)
            $async = $ps.BeginInvoke()
            $partial = Join-Path $dest "$($P.title).partial"
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            $lost = { @($ps.Streams.Verbose | ForEach-Object Message) -match 'Connection lost' }
            while (-not (& $lost) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            & $lost | Should -Not -BeNullOrEmpty
            (Get-Item $partial).Length | Should -BeGreaterThan 0
            # The run now sleeps 30 s before its next retry; Stop must not wait for that.
            $stop = $ps.BeginStop($null, $null)
            $stop.AsyncWaitHandle.WaitOne(10000) | Should -BeTrue
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            Test-Path $partial | Should -BeTrue
            Test-Path (Join-Path $dest $P.title) | Should -BeFalse
        }
        finally { $ps.Dispose() }
        Clear-ProxyFault -Registry $R
        $file = Save-OrasBlob $ViaProxy $dest
        Get-Sha $file.FullName | Should -Be $P.digest
    }

    It 'reports a destination under a file as DestinationNotWritable (non-terminating), by -InputObject and -Reference' {
        $blocker = Join-Path $Work 'afile'
        Set-Content -LiteralPath $blocker -Value 'not a folder'
        $image = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest"
        $errs = $null
        $out = $image | Save-OrasBlob -DestinationPath "$blocker/sub/" -ErrorVariable errs -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be "DestinationNotWritable,$Id"
        $errs[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        $errs[0].ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
        $errs = $null
        $null = Save-OrasBlob -Reference "oras://$($R.registry)/lab/debian:latest" -DestinationPath "$blocker/sub/x.gz" -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -Be "DestinationNotWritable,$Id"
    }

    It 'goes on with the next input after one fails to be written' {
        $a = Publish-TestImage -Registry $R -Repository lab/twoa -Tag latest -ImagePath $Image -Title 'a.raw.gz'
        $b = Publish-TestImage -Registry $R -Repository lab/twob -Tag latest -ImagePath $Image -Title 'b.raw.gz'
        $dest = New-Dest 'nextinput'
        # A folder where the first image's .partial must go: opening it as a file fails with an IO error.
        $null = New-Item -ItemType Directory -Path (Join-Path $dest 'a.raw.gz.partial')
        $errs = $null
        $out = Save-OrasBlob -Reference "oras://$($R.registry)/lab/twoa:latest", "oras://$($R.registry)/lab/twob:latest" -DestinationPath $dest -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be "DestinationNotWritable,$Id"
        @($out).Count | Should -Be 1
        $out.Name | Should -Be 'b.raw.gz'
        Get-Sha $out.FullName | Should -Be $b.digest
    }

    It 'maps a destination on a drive that does not exist to PathNotFound and goes on with the next input' {
        $images = @(Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest") * 2
        $errs = $null
        $out = $images | Save-OrasBlob -DestinationPath 'NoSuchDrive:/x.gz' -ErrorVariable errs -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $errs.Count | Should -Be 2
        $errs | ForEach-Object { $_.FullyQualifiedErrorId | Should -Be "PathNotFound,$Id" }
        $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    Context 'paths are PowerShell''s, not the process''s' {
        BeforeEach {
            $script:Elsewhere = New-Dest "process-cwd-$([guid]::NewGuid().ToString('n'))"
            $script:OldCwd = [Environment]::CurrentDirectory
            [Environment]::CurrentDirectory = $Elsewhere
            $script:Here = New-Dest "location-$([guid]::NewGuid().ToString('n'))"
            Push-Location -LiteralPath $Here
        }
        AfterEach {
            Pop-Location
            [Environment]::CurrentDirectory = $OldCwd
            # Nothing may ever land in the process's current directory.
            @(Get-ChildItem -LiteralPath $Elsewhere -Recurse -Force).Count | Should -Be 0
        }

        It 'resolves a relative -DestinationPath (folder and file) and the default against the current location' {
            $image = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest"
            $file = $image | Save-OrasBlob -DestinationPath 'rel/'
            $file.FullName | Should -Be (Join-Path $Here "rel/$($P.title)")
            $file = $image | Save-OrasBlob -DestinationPath 'rel2/named.gz'
            $file.FullName | Should -Be (Join-Path $Here 'rel2/named.gz')
            Get-Sha $file.FullName | Should -Be $P.digest
            $file = $image | Save-OrasBlob
            $file.FullName | Should -Be (Join-Path $Here $P.title)
        }

        It 'expands ~ to the FileSystem provider''s home' {
            $provider = Get-PSProvider FileSystem
            $oldHome = $provider.Home
            $provider.Home = New-Dest "home-$([guid]::NewGuid().ToString('n'))"
            try {
                $file = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" -DestinationPath '~/sub/x.gz'
                $file.FullName | Should -Be (Join-Path $provider.Home 'sub/x.gz')
                Get-Sha $file.FullName | Should -Be $P.digest
            }
            finally { $provider.Home = $oldHome }
        }

        It 'writes to a PSDrive path (T:\sub and T:/sub/)' {
            $root = New-Dest "drive-$([guid]::NewGuid().ToString('n'))"
            $null = New-PSDrive -Name T -PSProvider FileSystem -Root $root -Scope Global
            try {
                $file = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" -DestinationPath 'T:\sub\y.gz'
                $file.FullName | Should -Be ([IO.Path]::Combine($root, 'sub', 'y.gz'))
                $file = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" -DestinationPath 'T:/sub/'
                $file.FullName | Should -Be ([IO.Path]::Combine($root, 'sub', $P.title))
                Get-Sha $file.FullName | Should -Be $P.digest
                Push-Location 'T:\'
                try {
                    $file = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" -DestinationPath 'fromdrive.gz'
                    $file.FullName | Should -Be ([IO.Path]::Combine($root, 'fromdrive.gz'))
                }
                finally { Pop-Location }
            }
            finally { Remove-PSDrive -Name T -Scope Global -Force }
        }
    }

    It 'never keeps a <Case> .partial prefix: the file saved is the blob, or nothing is' -ForEach @(
        @{ Case = 'corrupted'; Foreign = $false }
        @{ Case = 'foreign'; Foreign = $true }
    ) {
        $full = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" (New-Dest "src-$Case") -CacheServer ''
        $dest = New-Dest "prefix-$Case"
        $bytes = [IO.File]::ReadAllBytes($full.FullName)[0..399999]
        if ($Foreign) { $bytes = [byte[]]::new(400000); [Random]::new(9).NextBytes($bytes) }
        else { $bytes[4321] = $bytes[4321] -bxor 0xFF }
        [IO.File]::WriteAllBytes((Join-Path $dest "$($P.title).partial"), $bytes)
        $err = $null
        $file = Save-OrasBlob $ViaProxy $dest -CacheServer '' -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
        $saved = Join-Path $dest $P.title
        if ($err) {
            # Caught after the resume: refused as a mismatch, and neither the bad file nor the bad prefix stays.
            $err[0].FullyQualifiedErrorId | Should -Be "DigestMismatch,$Id"
            Test-Path $saved | Should -BeFalse
            Test-Path "$saved.partial" | Should -BeFalse
            $file = Save-OrasBlob $ViaProxy $dest -CacheServer ''
        }
        Get-Sha $file.FullName | Should -Be $P.digest
        Get-Sha $saved | Should -Be $P.digest
    }

    It 'discards a leftover .partial of another blob before resuming (<Case>)' -ForEach @(
        @{ Case = 'its record names another digest'; Record = $true }
        @{ Case = 'no record, and its last bytes are not the blob''s'; Record = $false }
    ) {
        $dest = New-Dest "leftover-$Record"
        $partial = Join-Path $dest "$($P.title).partial"
        $other = [byte[]]::new(400000); [Random]::new(17).NextBytes($other)
        [IO.File]::WriteAllBytes($partial, $other)
        if ($Record) {
            $otherDigest = 'sha256:' + [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($other)).ToLowerInvariant()
            @{ digest = $otherDigest; size = $other.Length; chunkSize = 4MB; done = @(0) } | ConvertTo-Json -Compress |
                Set-Content -LiteralPath "$partial.ranges" -NoNewline
        }
        Reset-ProxyStats -Registry $R
        $verbose = Save-OrasBlob $ViaProxy $dest -CacheServer '' -ErrorAction Stop -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message
        Get-Sha (Join-Path $dest $P.title) | Should -Be $P.digest
        ($verbose -match 'starting over') | Should -Not -BeNullOrEmpty
        ($verbose -match 'did not verify') | Should -BeNullOrEmpty
        $stats = Get-ProxyStats -Registry $R
        # Found before resuming: never asked from the leftover's end, and the blob came once (plus the checksum
        # sidecar and the 1 KiB sample of a partial without a record).
        @($stats.rangeHeaders) | Should -Not -Contain 'bytes=400000-'
        $stats.blobBytesSent | Should -BeLessOrEqual ($P.size + 1024 + 4096)
        Test-Path "$partial.ranges" | Should -BeFalse
    }

    Context 'a blob fetched as several ranges' {
        BeforeAll {
            $script:BigImage = Join-Path $Work 'big.raw'
            New-TestDiskImage -Path $BigImage -Size 40MB -Seed 21 -Shape Random
            $script:B = Publish-TestImage -Registry $R -Repository lab/big -Tag v1 -ImagePath $BigImage -Compression none
            $script:BigRef = "oras://$($R.proxy)/lab/big:v1"
        }

        It 'writes ranges at their offsets and, after a kill, fetches only the ranges its record does not list' {
            $dest = New-Dest 'ranged-kill'
            $ledger = Join-Path $dest "$($B.title).partial.ranges"
            $chunk = 4MB
            $chunks = [math]::Ceiling($B.size / $chunk)
            Set-ProxyFault -Registry $R -Kind Throttle -BytesPerSecond 2MB -Times -1 -PathContains $B.digest | Out-Null
            Reset-ProxyStats -Registry $R
            $child = Start-ChildPwsh -Command "Import-Module '$env:ORASSTAGING_MODULE'; Save-OrasBlob '$BigRef' '$dest' -CacheServer ''"
            try {
                $deadline = [DateTime]::UtcNow.AddSeconds(90)
                $done = @()
                while ($done.Count -lt 3 -and [DateTime]::UtcNow -lt $deadline -and -not $child.HasExited) {
                    Start-Sleep -Milliseconds 100
                    try { $done = @((Get-Content -LiteralPath $ledger -Raw -ErrorAction Stop | ConvertFrom-Json).done) } catch { $done = @() }
                }
                $child.HasExited | Should -BeFalse
            }
            finally { if (-not $child.HasExited) { $child.Kill($true) }; $child.WaitForExit() }
            Clear-ProxyFault -Registry $R
            $first = (Get-ProxyStats -Registry $R).blobBytesSent
            $done = @((Get-Content -LiteralPath $ledger -Raw | ConvertFrom-Json).done)
            $done.Count | Should -BeGreaterOrEqual 3
            $done.Count | Should -BeLessThan $chunks
            # Ranges finish out of order, but only those in flight (one per connection) can be missing below the last one.
            $max = ($done | Measure-Object -Maximum).Maximum
            @(0..$max | Where-Object { $_ -notin $done }).Count | Should -BeLessOrEqual 4

            Reset-ProxyStats -Registry $R
            $file = Save-OrasBlob $BigRef $dest -CacheServer '' -ErrorAction Stop
            Get-Sha $file.FullName | Should -Be $B.digest
            $stats = Get-ProxyStats -Registry $R
            $asked = @($stats.rangeHeaders | Where-Object { $_ } | ForEach-Object { [long]($_ -replace '^bytes=(\d+)-.*$', '$1') })
            $asked | Should -Not -BeNullOrEmpty
            foreach ($from in $asked) { [long][math]::Floor($from / $chunk) | Should -Not -BeIn $done }
            $missing = 0..($chunks - 1) | Where-Object { $_ -notin $done } |
                ForEach-Object { [math]::Min($chunk, $B.size - $_ * $chunk) } | Measure-Object -Sum
            # Plus the checksum sidecar; and what both runs fetched is the blob plus at most the ranges in flight at the kill.
            $stats.blobBytesSent | Should -BeLessOrEqual ($missing.Sum + 4096)
            ($first + $stats.blobBytesSent) | Should -BeLessOrEqual ($B.size + 4 * $chunk + 1MB)
            Test-Path $ledger | Should -BeFalse
        }
    }

    It 'refuses a hostile title and writes nothing outside the destination' {
        $hostile = Publish-TestImage -Registry $R -Repository lab/hostile -Tag latest -ImagePath $Image -Title '../../x'
        $dest = New-Dest 'hostile/inner'
        { Save-OrasBlob "oras://$($R.registry)/lab/hostile:latest" $dest -ErrorAction Stop } | Should -Throw -ErrorId "InvalidTitle,$Id"
        @(Get-ChildItem (Join-Path $Work 'hostile') -Recurse -Force -File).Count | Should -Be 0
        Test-Path (Join-Path $Work 'x') | Should -BeFalse
        # A file path as destination chooses the name instead.
        $file = Save-OrasBlob "oras://$($R.registry)/lab/hostile:latest" (Join-Path $dest 'safe.gz')
        Get-Sha $file.FullName | Should -Be $hostile.digest
    }

    Context 'withcache' {
        BeforeAll { $script:Cache = Start-CacheStandIn }
        AfterAll { Stop-CacheStandIn $Cache }

        It 'downloads from the cache on a hit (no credentials, digest still checked) and from the registry on a miss' {
            $image = Resolve-OrasImage "oras://$($R.proxy)/lab/debian:latest"
            $key = Get-CacheKey http $R.proxy lab/debian $P.digest
            $source = Save-OrasBlob "oras://$($R.registry)/lab/debian:latest" (New-Dest 'cachesrc')
            $Cache.Files["/b/$key/$($image.Digest)"] = $source.FullName

            Reset-ProxyStats -Registry $R
            $env:WITHCACHE_SERVER = $Cache.Url
            try {
                $out = $image | Save-OrasBlob -DestinationPath (New-Dest 'cachehit') -Verbose 4>&1
            }
            finally { $env:WITHCACHE_SERVER = $null }
            Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $P.digest
            (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'Cache hit'
            (Get-ProxyStats -Registry $R).requestsByKind.blob | Should -Be 0
            @($Cache.Log) | Should -Contain "GET /b/$key/$($image.Digest) auth=False"

            $Cache.Files.Clear()
            $out = $image | Save-OrasBlob -DestinationPath (New-Dest 'cachemiss') -CacheServer $Cache.Url -Verbose 4>&1
            Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $P.digest
            (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'Cache miss'
            (Get-ProxyStats -Registry $R).requestsByKind.blob | Should -BeGreaterThan 0
        }

        It 'still refuses a cache that serves wrong bytes' {
            $image = Resolve-OrasImage "oras://$($R.registry)/lab/debian:latest"
            $key = Get-CacheKey http $R.registry lab/debian $P.digest
            $wrong = Join-Path $Work 'wrong.bin'
            $bytes = [byte[]]::new($image.Size); $bytes[0] = 1
            [IO.File]::WriteAllBytes($wrong, $bytes)
            $Cache.Files["/b/$key/$($image.Digest)"] = $wrong
            $dest = New-Dest 'cachewrong'
            { $image | Save-OrasBlob -DestinationPath $dest -CacheServer $Cache.Url -ErrorAction Stop } | Should -Throw -ErrorId "DigestMismatch,$Id"
            @(Get-ChildItem $dest -Force).Count | Should -Be 0
        }
    }
}

Describe 'Save-OrasBlob with token auth over TLS' {
    BeforeAll {
        $script:T = Start-TestRegistry -Auth token -Tls -TokenExpiresIn 300
        $script:TP = Publish-TestImage -Registry $T -Repository lab/debian -ImagePath $Image
        $script:Good = [pscredential]::new($T.username, (ConvertTo-SecureString $T.password -AsPlainText -Force))
        $script:ViaProxy = "oras://$($T.proxy)/lab/debian:latest"
    }
    AfterAll { Stop-TestRegistry $T }
    AfterEach { Clear-ProxyFault -Registry $T }

    It 'downloads over https with -SkipCertificateCheck' {
        $file = Save-OrasBlob "oras://$($T.registry)/lab/debian:latest" (New-Dest 'tls') -SkipCertificateCheck -Credential $Good
        Get-Sha $file.FullName | Should -Be $TP.digest
    }

    It 'follows the 307 to the CDN without ever sending it Authorization' {
        Reset-ProxyStats -Registry $T
        Set-ProxyFault -Registry $T -Kind Redirect -RejectAuthorization | Out-Null
        $out = Save-OrasBlob $ViaProxy (New-Dest 'cdn') -SkipCertificateCheck -Credential $Good -Verbose 4>&1
        Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $TP.digest
        $stats = Get-ProxyStats -Registry $T
        $stats.cdnRequests | Should -BeGreaterThan 0
        $stats.cdnRequestsWithAuthorization | Should -Be 0
        $text = ($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n"
        $text | Should -Match 'redirected to 127\.0\.0\.1'
        $text | Should -Not -Match 'X-Amz-Signature'
    }

    It 'gets a fresh token when the first one expires mid-download' {
        Reset-ProxyStats -Registry $T
        Set-ProxyFault -Registry $T -Kind Unauthorized -AfterBytes 250000 -Times 1 -PathContains $TP.digest | Out-Null
        $out = Save-OrasBlob $ViaProxy (New-Dest 'expiry') -SkipCertificateCheck -RetryIntervalSec 0 -Verbose 4>&1
        Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $TP.digest
        $stats = Get-ProxyStats -Registry $T
        $stats.faultsFired.unauthorized | Should -Be 1
        $stats.tokenRequestsGranted | Should -BeGreaterOrEqual 2
        (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'Resuming blob'
    }
}

# The credential-leak checks where a credential really exists: the registry refuses anonymous pulls of the private
# repository, so a success proves the credential was sent to the registry, and the CDN/cache saw none of it.
Describe 'Save-OrasBlob keeps <Mode> credentials from the CDN and the cache' -ForEach @(
    @{ Mode = 'token' }
    @{ Mode = 'basic' }
) {
    BeforeAll {
        $script:A = Start-TestRegistry -Auth $Mode
        $script:AP = Publish-TestImage -Registry $A -Repository $A.privateRepository -ImagePath $Image
        $script:ACred = [pscredential]::new($A.username, (ConvertTo-SecureString $A.password -AsPlainText -Force))
        $script:ARef = "oras://$($A.proxy)/$($A.privateRepository):latest"
        $script:Cache = Start-CacheStandIn
    }
    AfterAll {
        Stop-CacheStandIn $Cache
        Stop-TestRegistry $A
    }
    BeforeEach { Reset-ProxyStats -Registry $A }
    AfterEach { Clear-ProxyFault -Registry $A }

    It 'follows the 307 to a CDN that answers 400 to any Authorization' {
        Set-ProxyFault -Registry $A -Kind Redirect -RejectAuthorization | Out-Null
        $file = Save-OrasBlob $ARef (New-Dest "cdn-$Mode") -Credential $ACred -CacheServer ''
        Get-Sha $file.FullName | Should -Be $AP.digest
        $stats = Get-ProxyStats -Registry $A
        @($stats.requests | Where-Object { $_.kind -eq 'Blob' -and $_.authorization -and $_.status -eq 307 }).Count |
            Should -BeGreaterThan 0 -Because 'the registry side of the redirect was asked with the credential'
        $stats.cdnRequests | Should -BeGreaterThan 0
        $stats.cdnRequestsWithAuthorization | Should -Be 0
        @($stats.cdnLog | Where-Object { $_.status -ge 300 }).Count | Should -Be 0
    }

    It 'sends no credential to the cache on a hit' {
        $key = Get-CacheKey http $A.proxy $A.privateRepository $AP.digest
        $source = Save-OrasBlob "oras://$($A.registry)/$($A.privateRepository):latest" (New-Dest "cachesrc-$Mode") -Credential $ACred -CacheServer ''
        $Cache.Files["/b/$key/$($AP.digest)"] = $source.FullName
        Reset-ProxyStats -Registry $A
        $out = Save-OrasBlob $ARef (New-Dest "cachehit-$Mode") -Credential $ACred -CacheServer $Cache.Url -Verbose 4>&1
        Get-Sha ($out | Where-Object { $_ -is [IO.FileInfo] }).FullName | Should -Be $AP.digest
        (($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'Cache hit'
        $stats = Get-ProxyStats -Registry $A
        @($stats.requests | Where-Object { $_.kind -eq 'Manifest' -and $_.authorization -and $_.status -eq 200 }).Count |
            Should -BeGreaterThan 0 -Because 'the manifest was read with the credential'
        # Resolving reads the small .sha256 sidecar blob; the layer itself came from the cache only.
        @($stats.requests | Where-Object { $_.path -like "*/blobs/$($AP.digest)*" }).Count | Should -Be 0
        @($Cache.Log) | Should -Contain "GET /b/$key/$($AP.digest) auth=False"
        @($Cache.Log | Where-Object { $_ -like '* auth=True' }).Count | Should -Be 0
    }
}
