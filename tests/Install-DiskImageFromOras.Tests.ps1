#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# Install-DiskImageFromOras against the real registry (Debian's docker-registry), through the TestKit's fault
# proxy. Images are a few MiB so the file stays fast; every wait is bounded.

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $ModulePath -Force

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-install-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work

    # The source raw image: not a multiple of 64 KiB, realistic layout; and a different second one.
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (5MB + 100) -Seed 11).FullName
    $script:Raw2 = (New-TestDiskImage -Path (Join-Path $Work 'source2.img') -Size (3MB) -Seed 12).FullName

    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Pub = Publish-TestImage -Registry $Registry -Repository 'lab/debian' -Tag 'latest' -ImagePath $Raw
    $script:Pub2 = Publish-TestImage -Registry $Registry -Repository 'lab/debian' -Tag 'other' -ImagePath $Raw2 -Compression zstd
    # Incompressible, so the blob is larger than the client's 1 MiB buffers and a cut lands mid-stream.
    $script:Raw3 = (New-TestDiskImage -Path (Join-Path $Work 'source3.img') -Size (4MB + 512) -Seed 13 -Shape Random).FullName
    $script:Pub3 = Publish-TestImage -Registry $Registry -Repository 'lab/big' -Tag 'latest' -ImagePath $Raw3
    $script:Big = "oras://$($Registry.proxy)/lab/big:latest"
    $script:Repo = "oras://$($Registry.proxy)/lab/debian"

    # A child pwsh started the way this one was (under `dotnet pwsh` the process is dotnet and pwsh.dll comes first).
    $script:PwshPath = [Environment]::ProcessPath
    $script:PwshPrefix = @()
    if ((Split-Path $PwshPath -Leaf) -like 'dotnet*') { $script:PwshPrefix = @([Environment]::GetCommandLineArgs()[0]) }

    function script:New-Target([string] $Name = 'disk.qcow2') {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory -Force $folder
        Join-Path $folder $Name
    }

    function script:Get-FolderNames([string] $Target) {
        @(Get-ChildItem (Split-Path $Target) -Force | ForEach-Object Name | Sort-Object)
    }

    function script:Get-ExpectedFormat([string] $Image) {
        # The format the target's extension asks for, from the README's table (not from the cmdlet's own answer).
        switch -Regex ([IO.Path]::GetExtension($Image).ToLowerInvariant()) {
            '^\.qcow2$' { 'qcow2' }
            '^\.vhd$' { 'vpc' }
            default { 'raw' }
        }
    }

    function script:Assert-Identical([string] $Image, [string] $Source = $Raw, [string] $Format = (Get-ExpectedFormat $Image)) {
        # The format comes from qemu-img's own probe, so a qcow2 target written as raw (or the reverse) fails here.
        if ($Format -eq 'vpc') {
            # qemu-img probes a VHD by the header copy that only dynamic VHDs have, so a fixed VHD probes as raw:
            # look for the fixed footer itself (cookie "conectix", disk type 2) and let qemu-img read it as vpc.
            $footer = [IO.File]::ReadAllBytes($Image)[-512..-1]
            [Text.Encoding]::ASCII.GetString([byte[]]$footer[0..7]) | Should -BeExactly 'conectix'
            ($footer[60..63] -join ',') | Should -Be '0,0,0,2' -Because 'disk type 2 is a fixed VHD'
            $info = & qemu-img info -f vpc --output json $Image 2>&1
            $LASTEXITCODE | Should -Be 0 -Because "qemu-img info: $info"
        }
        else {
            $info = & qemu-img info --output json $Image 2>&1
            $LASTEXITCODE | Should -Be 0 -Because "qemu-img info: $info"
            ($info | ConvertFrom-Json).format | Should -BeExactly $Format -Because "qemu-img probes $Image"
        }
        # Formats given explicitly: without -f/-F qemu-img would probe and compare whatever it finds.
        $out = & qemu-img compare -q -f raw -F $Format $Source $Image 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "qemu-img compare: $out"
        # Always check; qemu-img has no check for raw or vpc (63, "does not support checks"), whose format is
        # proven above instead.
        $out = & qemu-img check -q -f $Format $Image 2>&1
        $expected = if ($Format -in 'raw', 'vpc') { 63 } else { 0 }
        $LASTEXITCODE | Should -Be $expected -Because "qemu-img check -f ${Format}: $out"
    }

    function script:Assert-Staged([string] $Target, $Published = $Pub) {
        $source = if ($Published -eq $Pub2) { $Raw2 } elseif ($Published -eq $Pub3) { $Raw3 } else { $Raw }
        Assert-Identical $Target $source
        [IO.File]::ReadAllText("$Target.digest") | Should -BeExactly $Published.digest
        Get-FolderNames $Target | Should -Be @((Split-Path $Target -Leaf), "$(Split-Path $Target -Leaf).digest", "$(Split-Path $Target -Leaf).oras.json")
    }

    function script:Get-LayerRequests($Stats, [string] $Digest) {
        # The layer blob's own GETs (resolving also reads the small .sha256 sidecar blob).
        @($Stats.requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*/blobs/$Digest*" })
    }

    function script:Wait-Until([scriptblock] $Condition, [int] $Seconds = 60, [string] $What = 'condition') {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $Seconds s waiting for $What." }
            Start-Sleep -Milliseconds 50
        }
    }

    function script:Start-ChildPwsh([string] $Command) {
        $psi = [Diagnostics.ProcessStartInfo]::new($PwshPath)
        foreach ($a in $PwshPrefix + @('-NoProfile', '-NonInteractive', '-Command', $Command)) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $process = [Diagnostics.Process]::Start($psi)
        $process | Add-Member -NotePropertyName Err -NotePropertyValue $process.StandardError.ReadToEndAsync()
        $process | Add-Member -NotePropertyName Out -NotePropertyValue $process.StandardOutput.ReadToEndAsync() -PassThru
    }

    function script:Start-ChildInstall([string] $Reference, [string] $Target, [string] $Extra = '') {
        Start-ChildPwsh "Import-Module '$ModulePath'; Install-DiskImageFromOras '$Reference' -Path '$Target' -ErrorAction Stop $Extra | ForEach-Object { 'SKIPPED=' + `$_.Skipped }"
    }

    function script:Wait-Child($Process, [int] $Seconds = 120) {
        if (-not $Process.WaitForExit($Seconds * 1000)) {
            $Process.Kill($true)
            throw "The child pwsh did not finish in $Seconds s."
        }
        $Process.WaitForExit()
    }
}

AfterAll {
    Stop-TestRegistry $Registry
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'Install-DiskImageFromOras' {
    BeforeEach {
        Clear-ProxyFault -Registry $Registry
        Reset-ProxyStats -Registry $Registry
    }

    Context 'staging' {
        It 'stages by tag: identical to the source, qemu-img check clean, stamp and receipt right' {
            $target = New-Target
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $target

            Assert-Staged $target
            $result.PSObject.TypeNames[0] | Should -Be 'OrasStaging.StagedImage'
            $result.Skipped | Should -BeFalse
            $result.Digest | Should -Be $Pub.digest
            $result.ManifestDigest | Should -Be $Pub.manifestDigest
            $result.Format | Should -Be 'qcow2'
            $result.Path | Should -Be $target
            $result.FileSize | Should -Be (Get-Item $target).Length

            $receipt = Get-Content "$target.oras.json" -Raw | ConvertFrom-Json
            $receipt.reference | Should -Be "${Repo}:latest"
            $receipt.registry | Should -Be $Registry.proxy
            $receipt.repository | Should -Be 'lab/debian'
            $receipt.manifestDigest | Should -Be $Pub.manifestDigest
            $receipt.digest | Should -Be $Pub.digest
            $receipt.mediaType | Should -Be $Pub.mediaType
            $receipt.title | Should -Be $Pub.title
            $receipt.format | Should -Be 'qcow2'
            $receipt.virtualSize | Should -Be $result.VirtualSize
            $receipt.moduleVersion | Should -Be (Import-PowerShellDataFile $ModulePath).ModuleVersion
            [DateTimeOffset]$receipt.time | Should -BeGreaterThan ([DateTimeOffset]::UtcNow.AddMinutes(-5))
            @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -Be 1
        }

        It 'stages by manifest digest' {
            $target = New-Target
            $result = Install-DiskImageFromOras "$Repo@$($Pub.manifestDigest)" -Path $target
            Assert-Staged $target
            $result.ManifestDigest | Should -Be $Pub.manifestDigest
            (Get-Content "$target.oras.json" -Raw | ConvertFrom-Json).manifestDigest | Should -Be $Pub.manifestDigest
        }

        It 'stages by layer blob digest, zstd, as raw from the extension' {
            $target = New-Target 'disk.img'
            $result = Install-DiskImageFromOras "$Repo@$($Pub2.digest)" -Path $target
            Assert-Staged $target $Pub2
            $result.Format | Should -Be 'raw'
            (Get-FileHash $target).Hash | Should -Be (Get-FileHash $Raw2).Hash
            (Get-Content "$target.oras.json" -Raw | ConvertFrom-Json).digest | Should -Be $Pub2.digest
        }

        It '-GrowBy 8GB gives the raw size plus 8 GiB, identical to the seed''s convert-then-resize' {
            $target = New-Target
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $target -GrowBy 8GB
            $seed = Join-Path (Split-Path $target) 'seed.qcow2'
            & qemu-img convert -f raw -O qcow2 $Raw $seed
            & qemu-img resize -q $seed +8G
            $ours = & qemu-img info --output json $target | ConvertFrom-Json
            $theirs = & qemu-img info --output json $seed | ConvertFrom-Json
            $ours.format | Should -BeExactly 'qcow2'
            $ours.'virtual-size' | Should -Be $theirs.'virtual-size'
            $ours.'virtual-size' | Should -Be ([math]::Ceiling((Get-Item $Raw).Length / 512) * 512 + 8GB)
            $result.VirtualSize | Should -Be $ours.'virtual-size'
            & qemu-img compare -q -f qcow2 -F qcow2 $target $seed
            $LASTEXITCODE | Should -Be 0
            & qemu-img check -q -f qcow2 $target | Out-Null
            $LASTEXITCODE | Should -Be 0
        }

        It 'keeps the verified blob with -KeepBlob and reuses it for another target without blob requests' {
            $keep = Join-Path (Split-Path (New-Target)) 'blobs'
            $first = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $first -KeepBlob $keep
            $kept = Join-Path $keep "sha256/$($Pub.digest.Substring(7))"
            (Get-FileHash $kept -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $Pub.digest.Substring(7)

            Reset-ProxyStats -Registry $Registry
            $second = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $second -KeepBlob $keep
            Assert-Staged $second
            @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -Be 0
            @(Get-ChildItem $keep -Recurse -File).Count | Should -Be 1
        }
    }

    Context 'parameters through the cmdlet' {
        It '-Size 16MB gives exactly that virtual size, the source first and zeros after it' {
            $target = New-Target
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $target -Size 16MB
            $info = & qemu-img info --output json $target | ConvertFrom-Json
            $info.'virtual-size' | Should -Be 16MB
            $result.VirtualSize | Should -Be 16MB
            # compare without -s: the larger image must be all zeros beyond the source.
            Assert-Identical $target $Raw
        }

        It '-Format Qcow2 writes qcow2 whatever the extension says' {
            $target = New-Target 'disk.bin'
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -Format Qcow2
            Assert-Identical $target $Raw 'qcow2'
        }

        # Azure wants a whole MiB of data plus the footer, so the 5 MiB+100 source becomes 6 MiB + 512. qemu-img's
        # force_size keeps the size as given (5243904 bytes here, which Azure refuses), so the reference is qemu-img
        # converting the same source padded to the whole MiB: footer and geometry must then be byte for byte qemu's.
        It 'a .vhd target is a fixed VHD whose footer and size equal what qemu-img convert writes' {
            $target = New-Target 'disk.vhd'
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $target
            Assert-Identical $target $Raw 'vpc'
            $mib = 1MB
            (Get-Item $target).Length | Should -Be ([math]::Ceiling((Get-Item $Raw).Length / $mib) * $mib + 512) -Because 'Azure needs N MiB + 512'
            $padded = Join-Path (Split-Path $target) 'padded.raw'
            Copy-Item $Raw $padded
            & truncate -s "%$mib" $padded
            $theirs = Join-Path (Split-Path $target) 'qemu.vhd'
            & qemu-img convert -f raw -O vpc -o subformat=fixed,force_size $padded $theirs
            $LASTEXITCODE | Should -Be 0
            (Get-Item $target).Length | Should -Be (Get-Item $theirs).Length
            $ours = [IO.File]::ReadAllBytes($target)[-512..-1]
            $ref = [IO.File]::ReadAllBytes($theirs)[-512..-1]
            # Every footer field but the timestamp (24..27), the checksum (64..67) and the unique id (68..83):
            # cookie, features, version, data offset, creator, original and current size, geometry, disk type.
            foreach ($range in @(0..23), @(28..63), @(84..511)) {
                ($ours[$range] -join ',') | Should -Be ($ref[$range] -join ',') -Because "footer bytes $($range[0])..$($range[-1])"
            }
            # The checksum is right for the footer as written: one's complement of the byte sum without it.
            $sum = 0; for ($i = 0; $i -lt 512; $i++) { if ($i -lt 64 -or $i -gt 67) { $sum += $ours[$i] } }
            $stored = ([uint32]$ours[64] -shl 24) -bor ([uint32]$ours[65] -shl 16) -bor ([uint32]$ours[66] -shl 8) -bor [uint32]$ours[67]
            $stored | Should -Be ((-bnot [uint32]$sum) -band [uint32]::MaxValue)
        }

        It '-Platform linux/arm64 stages the arm64 image of an index' {
            $published = Publish-TestImage -Registry $Registry -Repository 'lab/multi' -Tag 'latest' -ImagePath $Raw2 -Index
            $arm = $published.platforms | Where-Object platform -EQ 'linux/arm64'
            $target = New-Target 'disk.img'
            $null = Install-DiskImageFromOras "oras://$($Registry.proxy)/lab/multi:latest" -Path $target -Platform linux/arm64
            [IO.File]::ReadAllText("$target.digest") | Should -BeExactly $arm.digest
            (Get-FileHash $target -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $arm.rawSha256
            [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($target), 0, 17) | Should -Be 'ORASSTAGING-ARM64'
        }

        It '-LayerTitle picks the layer by title, and a title no layer has is refused' {
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -LayerTitle $Pub.title
            Assert-Staged $target
            $other = New-Target
            $err = $null
            Install-DiskImageFromOras "${Repo}:latest" -Path $other -LayerTitle 'no-such-layer.img.gz' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'NoImageLayer,*'
            Get-FolderNames $other | Should -BeNullOrEmpty
        }

        It 'a damaged -KeepBlob copy is caught and removed, the next run downloads it, and -Force downloads anew' {
            $keep = Join-Path (Split-Path (New-Target)) 'blobs'
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path (New-Target) -KeepBlob $keep
            $kept = Join-Path $keep "sha256/$($Pub.digest.Substring(7))"
            $bytes = [IO.File]::ReadAllBytes($kept)
            $bytes[1000] = $bytes[1000] -bxor 0xFF
            [IO.File]::WriteAllBytes($kept, $bytes)

            $target = New-Target
            $err = $null
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -KeepBlob $keep -ErrorVariable err -ErrorAction SilentlyContinue
            if ($err) {
                # Caught on the read: the damaged copy is gone and nothing was staged from it.
                $err[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'
                Test-Path $kept | Should -BeFalse
                Get-FolderNames $target | Should -BeNullOrEmpty
                Reset-ProxyStats -Registry $Registry
                $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -KeepBlob $keep
                @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -BeGreaterThan 0
            }
            Assert-Staged $target
            (Get-FileHash $kept -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $Pub.digest.Substring(7)

            Reset-ProxyStats -Registry $Registry
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -KeepBlob $keep -Force
            @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -BeGreaterThan 0 -Because '-Force downloads the kept blob anew'
            Assert-Staged $target
        }
    }

    Context 'TLS' {
        BeforeAll {
            $script:TlsRegistry = Start-TestRegistry -Tls
            $script:TlsPub = Publish-TestImage -Registry $TlsRegistry -Repository 'lab/debian' -Tag 'latest' -ImagePath $Raw
        }
        AfterAll { Stop-TestRegistry $TlsRegistry }

        It 'stages over https with -SkipCertificateCheck, and refuses the untrusted certificate without it' {
            $target = New-Target
            $err = $null
            Install-DiskImageFromOras "oras://$($TlsRegistry.proxy)/lab/debian:latest" -Path $target -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            Get-FolderNames $target | Should -BeNullOrEmpty
            $null = Install-DiskImageFromOras "oras://$($TlsRegistry.proxy)/lab/debian:latest" -Path $target -SkipCertificateCheck
            Assert-Staged $target $TlsPub
        }
    }

    Context 'skip by digest' {
        BeforeAll {
            $script:Staged = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $Staged
        }

        It 'a pinned blob digest with a matching stamp makes zero requests' {
            Reset-ProxyStats -Registry $Registry
            $result = Install-DiskImageFromOras "$Repo@$($Pub.digest)" -Path $Staged
            $result.Skipped | Should -BeTrue
            $result.SkipReason | Should -Match 'blob digest'
            (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
        }

        It 'a pinned manifest digest the receipt knows makes zero requests' {
            Reset-ProxyStats -Registry $Registry
            $result = Install-DiskImageFromOras "$Repo@$($Pub.manifestDigest)" -Path $Staged
            $result.Skipped | Should -BeTrue
            $result.ManifestDigest | Should -Be $Pub.manifestDigest
            (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
        }

        It 'a tag resolves the manifest only and fetches no blob bytes' {
            Reset-ProxyStats -Registry $Registry
            $before = (Get-Item $Staged).LastWriteTimeUtc
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $Staged
            $result.Skipped | Should -BeTrue
            $stats = Get-ProxyStats -Registry $Registry
            $stats.requestsByKind.manifest | Should -BeGreaterThan 0
            @(Get-LayerRequests $stats $Pub.digest).Count | Should -Be 0
            $stats.blobBytesSent | Should -BeLessThan 1KB   # at most the .sha256 sidecar
            (Get-Item $Staged).LastWriteTimeUtc | Should -Be $before
        }

        It 'honours a stamp written by the seed script' {
            $target = New-Target
            & qemu-img convert -f raw -O qcow2 $Raw $target
            & qemu-img resize -q $target +8G
            [IO.File]::WriteAllText("$target.digest", $Pub.digest)   # the seed's stamp.write_text(digest)
            $hash = (Get-FileHash $target).Hash
            $result = Install-DiskImageFromOras "$Repo@$($Pub.digest)" -Path $target
            $result.Skipped | Should -BeTrue
            $tagged = Install-DiskImageFromOras "${Repo}:latest" -Path $target
            $tagged.Skipped | Should -BeTrue
            (Get-FileHash $target).Hash | Should -Be $hash
        }

        It 're-stages when the stamp is deleted, and with -Force' {
            Remove-Item "$Staged.digest"
            Reset-ProxyStats -Registry $Registry
            $result = Install-DiskImageFromOras "$Repo@$($Pub.digest)" -Path $Staged
            $result.Skipped | Should -BeFalse
            @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -Be 1
            Assert-Staged $Staged

            Reset-ProxyStats -Registry $Registry
            $forced = Install-DiskImageFromOras "$Repo@$($Pub.digest)" -Path $Staged -Force
            $forced.Skipped | Should -BeFalse
            @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest).Count | Should -Be 1
            Assert-Staged $Staged
        }

        It '-WhatIf tells whether it would skip or what it would pull, and writes nothing' {
            # What-if lines go to the host, so they are read from a child pwsh's output.
            $target = New-Target
            $skipChild = Start-ChildInstall "${Repo}:latest" $Staged '-WhatIf'
            $pullChild = Start-ChildInstall "${Repo}:latest" $target '-WhatIf'
            Wait-Child $skipChild
            Wait-Child $pullChild
            $skip = $skipChild.Out.Result
            $pull = $pullChild.Out.Result
            $skip | Should -Match 'Would skip'
            $pull | Should -Match 'Would pull sha256:'
            $pull | Should -Match 'qcow2'
            Get-FolderNames $target | Should -BeNullOrEmpty
        }
    }

    Context 'faults on the way' {
        It 'gives an identical image when the connection is cut <Times> time(s) mid-stream' -TestCases @(
            @{ Times = 1 }, @{ Times = 3 }
        ) {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 1300000 -Times $Times -PathContains $Pub3.digest | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras $Big -Path $target -RetryIntervalSec 0
            Assert-Staged $target $Pub3
            $stats = Get-ProxyStats -Registry $Registry
            $stats.faultsFired.cut | Should -Be $Times
            # How far each resume starts depends on what the reset connection delivered before the RST, so
            # only the outcome is asserted here; the registry client's own tests pin the Range behaviour.

        }

        It 'rides out <Kind>' -TestCases @(
            @{ Kind = 'TooManyRequests' }, @{ Kind = 'ServiceUnavailable' }
        ) {
            Set-ProxyFault -Registry $Registry -Kind $Kind -Times 2 -RetryAfter 1 -PathContains $Pub.digest | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -RetryIntervalSec 0
            Assert-Staged $target
            (Get-ProxyFault -Registry $Registry | Select-Object -First 1).fired | Should -Be 2
        }

        It 'retries HTTP 408 on the <Target>' -ForEach @(@{ Target = 'Blob' }, @{ Target = 'Manifest' }) {
            $path = if ($Target -eq 'Blob') { $Pub.digest } else { 'lab/debian/manifests/' }
            Set-ProxyFault -Registry $Registry -Kind Status -StatusCode 408 -Times 2 -Target $Target -PathContains $path | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -RetryIntervalSec 0
            Assert-Staged $target
            $stats = Get-ProxyStats -Registry $Registry
            $stats.faultsFired.status | Should -Be 2
            $answers = @($stats.requests | Where-Object { $_.method -eq 'GET' -and $_.path -like "*$path*" } | ForEach-Object status)
            $answers[0..1] | Should -Be @(408, 408)
            $answers[2] | Should -BeIn @(200, 206)
        }

        It 'waits what Retry-After asks before the next request (the gap measured at the proxy)' {
            Set-ProxyFault -Registry $Registry -Kind TooManyRequests -RetryAfter 2 -Times 1 -PathContains $Pub.digest | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -RetryIntervalSec 0
            Assert-Staged $target
            $layer = @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest)
            $layer[0].status | Should -Be 429
            ($layer[1].startedMs - $layer[0].startedMs) | Should -BeGreaterOrEqual 1900 -Because 'Retry-After: 2 asks for 2 s'
        }

        It 'waits -RetryIntervalSec before retrying a 503 without Retry-After (the gap measured at the proxy)' {
            Set-ProxyFault -Registry $Registry -Kind ServiceUnavailable -Times 1 -PathContains $Pub.digest | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target -RetryIntervalSec 2
            Assert-Staged $target
            $layer = @(Get-LayerRequests (Get-ProxyStats -Registry $Registry) $Pub.digest)
            $layer[0].status | Should -Be 503
            # The first back-off is the interval with at most 25 % jitter below it.
            ($layer[1].startedMs - $layer[0].startedMs) | Should -BeGreaterOrEqual 1450
        }

        It 'maps <Status> on the <Target> to <Id> and leaves nothing behind' -ForEach @(
            @{ Status = 403; Target = 'Manifest'; Id = 'AccessDenied' }
            @{ Status = 404; Target = 'Blob'; Id = 'BlobNotFound' }
        ) {
            $path = if ($Target -eq 'Blob') { $Pub.digest } else { 'lab/debian/manifests/' }
            Set-ProxyFault -Registry $Registry -Kind Status -StatusCode $Status -Times -1 -Target $Target -PathContains $path | Out-Null
            $target = New-Target
            $err = $null
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path $target -RetryIntervalSec 0 -ErrorVariable err -ErrorAction SilentlyContinue
            $result | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike "$Id,*"
            Get-FolderNames $target | Should -BeNullOrEmpty
        }

        It 'a corrupted byte is DigestMismatch, leaves no partial, and the previous image, stamp and receipt stay valid' {
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target
            $hashes = @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash }

            Set-ProxyFault -Registry $Registry -Kind Corrupt -Offset 1000 -Times -1 -PathContains $Pub2.digest | Out-Null
            $err = $null
            $result = Install-DiskImageFromOras "${Repo}:other" -Path $target -ErrorVariable err -ErrorAction SilentlyContinue -RetryIntervalSec 0
            $result | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'

            Assert-Staged $target
            @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $hashes
        }
    }

    Context 'interruptions and concurrency' {
        It 'a process killed mid-stream leaves no image, and the next run completes' {
            # Cuts with a back-off keep the child mid-stream long enough to be killed there.
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 1300000 -Times 3 -PathContains $Pub3.digest | Out-Null
            $target = New-Target
            $child = Start-ChildInstall $Big $target '-RetryIntervalSec 3'
            try {
                Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -gt 0 } -What 'a partial file'
            }
            finally {
                $child.Kill($true)
                $null = $child.WaitForExit(20000)
            }
            Test-Path $target | Should -BeFalse
            Test-Path "$target.digest" | Should -BeFalse

            Clear-ProxyFault -Registry $Registry
            $result = Install-DiskImageFromOras $Big -Path $target
            $result.Skipped | Should -BeFalse
            Assert-Staged $target $Pub3   # the killed run's partial is gone too
        }

        It 'Ctrl+C in-process leaves nothing behind' {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 1300000 -Times 3 -PathContains $Pub3.digest | Out-Null
            $target = New-Target
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddCommand('Import-Module').AddParameter('Name', $ModulePath).AddStatement()
                $null = $ps.AddCommand('Install-DiskImageFromOras').AddParameter('Reference', $Big).AddParameter('Path', $target).AddParameter('RetryIntervalSec', 3)
                $async = $ps.BeginInvoke()
                Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -gt 0 } -What 'a partial file'
                $stop = $ps.BeginStop($null, $null)
                $stop.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
                $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            }
            finally {
                $ps.Dispose()
            }
            Wait-Until { @(Get-FolderNames $target).Count -eq 0 } -Seconds 10 -What 'an empty folder'
            Get-FolderNames $target | Should -BeNullOrEmpty
        }

        It 'a kill -9 while a new image streams leaves the previous image, stamp and receipt as they were' {
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target
            $hashes = @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash }
            # Held mid-download, so the kill certainly lands while the new image is being written.
            Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 64KB -Times 1 -PathContains $Pub3.digest | Out-Null
            $child = Start-ChildInstall $Big $target
            try {
                Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -gt 0 } -Seconds 90 -What 'a partial file'
                Start-Sleep -Milliseconds 300   # a few throttled chunks written into it
            }
            finally {
                $child.Kill($true)   # SIGKILL: no finally block of the child runs
                $null = $child.WaitForExit(20000)
                Clear-ProxyFault -Registry $Registry
            }
            Assert-Identical $target $Raw
            @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $hashes

            # The next run stages the new image and removes what the killed one left.
            $null = Install-DiskImageFromOras $Big -Path $target
            Assert-Staged $target $Pub3
        }

        It 'a kill -9 mid-write of a qcow2 target leaves the previous image or nothing, and the partial is no valid qcow2 (previous image: <Previous>)' -ForEach @(
            @{ Previous = $true }, @{ Previous = $false }
        ) {
            $target = New-Target
            if ($Previous) {
                $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target
                $hashes = @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash }
            }
            # Held mid-download, so the kill lands while data clusters are being written into the partial.
            Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 64KB -Times 1 -PathContains $Pub3.digest | Out-Null
            $child = Start-ChildInstall $Big $target
            try {
                # Past cluster 0 (64 KiB) and a few data clusters: the writer is certainly mid-image.
                Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial' | Where-Object Length -GT 256KB).Count -gt 0 } -Seconds 120 -What 'a partial with data clusters'
            }
            finally {
                $child.Kill($true)   # SIGKILL: nothing of the child's own cleanup runs
                $null = $child.WaitForExit(20000)
                Clear-ProxyFault -Registry $Registry
            }
            $partials = @(Get-ChildItem (Split-Path $target) -Force -Filter '*.partial')
            $partials.Count | Should -Be 1 -Because 'a killed process cannot remove its partial; this test looks at what it left'
            foreach ($p in $partials) {
                $info = & qemu-img info -f qcow2 --output json $p.FullName 2>&1
                $LASTEXITCODE | Should -Not -Be 0 -Because "an interrupted write must not open as qcow2: $info"
                $check = & qemu-img check -f qcow2 $p.FullName 2>&1
                $LASTEXITCODE | Should -Not -Be 0 -Because "qemu-img check must not accept it: $check"
            }
            if ($Previous) {
                Assert-Identical $target $Raw
                @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $hashes
            }
            else {
                Test-Path $target | Should -BeFalse
                Test-Path "$target.digest" | Should -BeFalse
                Test-Path "$target.oras.json" | Should -BeFalse
            }
        }

        It 'Ctrl+C while a new image streams leaves the previous image, stamp and receipt as they were, and no partial' {
            $target = New-Target
            $null = Install-DiskImageFromOras "${Repo}:latest" -Path $target
            $hashes = @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash }
            Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 64KB -Times 1 -PathContains $Pub3.digest | Out-Null
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddCommand('Import-Module').AddParameter('Name', $ModulePath).AddStatement()
                $null = $ps.AddCommand('Install-DiskImageFromOras').AddParameter('Reference', $Big).AddParameter('Path', $target)
                $async = $ps.BeginInvoke()
                Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -gt 0 } -Seconds 90 -What 'a partial file'
                $stop = $ps.BeginStop($null, $null)
                $stop.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
                $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            }
            finally {
                $ps.Dispose()
                Clear-ProxyFault -Registry $Registry
            }
            Wait-Until { @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -eq 0 } -Seconds 10 -What 'the partial to go'
            Assert-Staged $target
            @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $hashes
        }

        It 'a real out-of-space (a tmpfs filled mid-stream) is InsufficientSpace and leaves the previous image, stamp and receipt' -Skip:(-not $IsLinux) {
            $mount = Join-Path $Work "tmpfs-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
            $null = New-Item -ItemType Directory $mount
            # Large enough for the cmdlet's own free-space check (size plus a margin), so the failure is the
            # file system's: it is filled up while the new image streams.
            & mount -t tmpfs -o size=96m tmpfs $mount 2>&1 | Out-Null
            if ($LASTEXITCODE -ne 0) { Set-ItResult -Skipped -Because 'this machine cannot mount a tmpfs (needs root)'; return }
            $ps = $null
            try {
                $target = Join-Path $mount 'disk.qcow2'
                $null = Install-DiskImageFromOras "${Repo}:other" -Path $target
                $hashes = @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash }

                Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 64KB -Times 1 -PathContains $Pub3.digest | Out-Null
                $ps = [powershell]::Create()
                $null = $ps.AddCommand('Import-Module').AddParameter('Name', $ModulePath).AddStatement()
                $null = $ps.AddCommand('Install-DiskImageFromOras').AddParameter('Reference', $Big).AddParameter('Path', $target).AddParameter('RetryIntervalSec', 0)
                $async = $ps.BeginInvoke()
                Wait-Until { @(Get-ChildItem $mount -Filter '*.partial').Count -gt 0 } -Seconds 90 -What 'a partial file'
                $free = [IO.DriveInfo]::new($mount).AvailableFreeSpace
                & fallocate -l $free (Join-Path $mount 'filler') 2>&1 | Out-Null
                if ($LASTEXITCODE -ne 0) { & dd if=/dev/zero of=(Join-Path $mount 'filler') bs=64k 2>&1 | Out-Null }
                [IO.DriveInfo]::new($mount).AvailableFreeSpace | Should -BeLessThan 64KB
                Clear-ProxyFault -Registry $Registry   # releases the download into the full file system
                $async.AsyncWaitHandle.WaitOne(120000) | Should -BeTrue
                $ps.Streams.Error.Count | Should -Be 1
                $ps.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'InsufficientSpace,*'
                Remove-Item (Join-Path $mount 'filler')
                Assert-Staged $target $Pub2
                @($target, "$target.digest", "$target.oras.json") | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $hashes
            }
            finally {
                if ($ps) { $ps.Dispose() }
                Clear-ProxyFault -Registry $Registry
                & umount $mount 2>&1 | Out-Null
                Remove-Item $mount -Recurse -Force -ErrorAction Ignore
            }
        }

        It 'a second process waits for the lock of the first and finds its image; -TimeoutSec gives up with LockTimeout' {
            # The first process is held mid-download (a throttled blob) until the test releases it, so the lock is
            # certainly held while the other two look at it, whatever the machine's load.
            Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 64KB -Times 1 -PathContains $Pub3.digest | Out-Null
            $target = New-Target
            $first = Start-ChildInstall $Big $target
            try {
                Wait-Until { (Test-Path "$target.lock") -and @(Get-ChildItem (Split-Path $target) -Filter '*.partial').Count -gt 0 } -Seconds 90 -What 'the first process holding the lock'

                $impatient = Start-ChildPwsh ("Import-Module '$ModulePath'; `$clock = [Diagnostics.Stopwatch]::StartNew(); " +
                    "try { `$null = Install-DiskImageFromOras '$Big' -Path '$target' -TimeoutSec 1 -ErrorAction Stop; 'STAGED' } " +
                    "catch { 'ID=' + `$_.FullyQualifiedErrorId }; 'ELAPSED=' + `$clock.Elapsed.TotalSeconds.ToString([cultureinfo]::InvariantCulture)")
                Wait-Child $impatient
                $first.HasExited | Should -BeFalse -Because 'the first process still holds the lock'
                $out = $impatient.Out.Result
                $out | Should -Match '(?m)^ID=LockTimeout,' -Because $impatient.Err.Result
                [double]([regex]::Match($out, 'ELAPSED=([0-9.]+)').Groups[1].Value) | Should -BeGreaterOrEqual 1.0

                $log = Join-Path $Work "patient-$([guid]::NewGuid().ToString('n')).log"
                $patient = Start-ChildPwsh ("Import-Module '$ModulePath'; Install-DiskImageFromOras '$Big' -Path '$target' -Verbose -ErrorAction Stop 4>&1 | " +
                    "ForEach-Object { `$line = if (`$_ -is [Management.Automation.VerboseRecord]) { 'VERBOSE=' + `$_.Message } else { 'SKIPPED=' + `$_.Skipped }; " +
                    "[IO.File]::AppendAllText('$log', `$line + [Environment]::NewLine) }")
                Wait-Until { (Test-Path $log) -and (Get-Content $log -Raw) -match 'Waiting for another process' } -Seconds 90 -What 'the second process to see the lock'
                $first.HasExited | Should -BeFalse -Because 'the second process saw the lock while the first held it'
            }
            finally {
                Clear-ProxyFault -Registry $Registry   # releases the throttled download
            }
            Wait-Child $first
            Wait-Child $patient
            $first.ExitCode | Should -Be 0 -Because $first.Err.Result
            $patient.ExitCode | Should -Be 0 -Because $patient.Err.Result
            $first.Out.Result.Trim() | Should -Be 'SKIPPED=False'
            $lines = Get-Content $log
            $lines | Should -Contain 'SKIPPED=True'
            # Found the first one's stamp only once the lock was free: the first had committed before this one looked.
            ($lines -match 'staged meanwhile by another process').Count | Should -Be 1
            Assert-Staged $target $Pub3
        }
    }

    Context 'many images' {
        It 'reads a cijoe config with three images (two oras) and honours -Include' {
            $folder = Split-Path (New-Target)
            $env:ORASSTAGING_TEST_DISKS = $folder
            try {
                $config = Join-Path $folder 'cijoe.toml'
                @"
[system-imaging.images.debian-13-x86_64]
cloud.url = "https://cloud.debian.org/images/cloud/trixie/latest/debian-13-generic-amd64.qcow2"
disk.path = "{{ local.env.ORASSTAGING_TEST_DISKS }}/debian-13.qcow2"

[system-imaging.images.Ubuntu-2604-x86_64]
oras.url = "${Repo}@$($Pub.digest)"
disk.path = "{{ local.env.ORASSTAGING_TEST_DISKS }}/ubuntu-2604.qcow2"

[system-imaging.images.freebsd-15-x86_64]
oras.url = "${Repo}:other"
disk.path = "{{ local.env.ORASSTAGING_TEST_DISKS }}/freebsd-15.qcow2"
"@ | Set-Content $config

                $only = @(Install-DiskImageFromOras -ConfigPath $config -Include 'ubuntu-*')
                $only.Count | Should -Be 1
                $only[0].Name | Should -Be 'Ubuntu-2604-x86_64'
                Test-Path (Join-Path $folder 'freebsd-15.qcow2') | Should -BeFalse

                $verbose = Install-DiskImageFromOras -ConfigPath $config -Verbose 4>&1
                $results = @($verbose | Where-Object { $_ -is [OrasStaging.StagedImage] })
                $results.Name | Should -Be @('Ubuntu-2604-x86_64', 'freebsd-15-x86_64')
                $results[0].Skipped | Should -BeTrue
                $results[1].Skipped | Should -BeFalse
                ($verbose | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n" | Should -Match 'debian-13-x86_64'
                Assert-Identical (Join-Path $folder 'ubuntu-2604.qcow2')
                Assert-Identical (Join-Path $folder 'freebsd-15.qcow2') $Raw2
                Test-Path (Join-Path $folder 'debian-13.qcow2') | Should -BeFalse
            }
            finally {
                Remove-Item Env:ORASSTAGING_TEST_DISKS -ErrorAction Ignore
            }
        }

        It 'takes pipeline input by property name; one failing image is a non-terminating error and the others go on' {
            $folder = Split-Path (New-Target)
            $items = @(
                [pscustomobject]@{ Name = 'one'; Url = "${Repo}:latest"; Path = (Join-Path $folder 'one.qcow2') }
                [pscustomobject]@{ Name = 'bad'; Url = "${Repo}:no-such-tag"; Path = (Join-Path $folder 'bad.qcow2') }
                [pscustomobject]@{ Name = 'two'; Reference = "${Repo}:other"; DestinationPath = (Join-Path $folder 'two.img') }
            )
            $err = $null
            $results = @($items | Install-DiskImageFromOras -ErrorVariable err -ErrorAction SilentlyContinue)
            $results.Name | Should -Be @('one', 'two')
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ManifestNotFound,*'
            Assert-Identical (Join-Path $folder 'one.qcow2')
            Assert-Identical (Join-Path $folder 'two.img') $Raw2
            Test-Path (Join-Path $folder 'bad.qcow2') | Should -BeFalse
        }
    }

    Context 'paths from PowerShell''s location' {
        BeforeEach {
            # The process's current directory is elsewhere, so a path resolved against it would land there.
            $script:Location = Split-Path (New-Target)
            $script:ProcessDir = Split-Path (New-Target)
            $script:SavedCwd = [Environment]::CurrentDirectory
            [Environment]::CurrentDirectory = $ProcessDir
            Push-Location $Location
        }

        AfterEach {
            Pop-Location
            [Environment]::CurrentDirectory = $SavedCwd
            Remove-PSDrive T -ErrorAction Ignore
        }

        It 'a relative -Path and -KeepBlob land under the Set-Location folder' {
            $null = New-Item -ItemType Directory (Join-Path $Location 'sub')
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path 'sub/disk.qcow2' -KeepBlob 'keep'
            $result.Path | Should -Be (Join-Path $Location 'sub/disk.qcow2')
            Assert-Staged (Join-Path $Location 'sub/disk.qcow2')
            Test-Path (Join-Path $Location "keep/sha256/$($Pub.digest -replace '^sha256:')") | Should -BeTrue
            @(Get-ChildItem $ProcessDir -Force) | Should -BeNullOrEmpty
        }

        It 'a relative -ConfigPath, and disk.path in it, are taken from the Set-Location folder' {
            @"
[system-imaging.images.one]
oras.url = "${Repo}:latest"
disk.path = "one.qcow2"
"@ | Set-Content (Join-Path $Location 'cijoe.toml')
            $result = @(Install-DiskImageFromOras -ConfigPath 'cijoe.toml')
            $result.Name | Should -Be 'one'
            $result.Path | Should -Be (Join-Path $Location 'one.qcow2')
            Assert-Identical (Join-Path $Location 'one.qcow2')
            [IO.File]::ReadAllText((Join-Path $Location 'one.qcow2.digest')) | Should -BeExactly $Pub.digest
            Test-Path (Join-Path $Location 'one.qcow2.oras.json') | Should -BeTrue
            @(Get-ChildItem $ProcessDir -Force) | Should -BeNullOrEmpty
        }

        It 'a PSDrive path lands in the drive''s root folder' {
            $root = Split-Path (New-Target)
            $null = New-PSDrive -Name T -PSProvider FileSystem -Root $root -Scope Global
            $result = Install-DiskImageFromOras "${Repo}:latest" -Path 'T:/disk.qcow2' -KeepBlob 'T:/keep'
            $result.Path | Should -Be (Join-Path $root 'disk.qcow2')
            Test-Path (Join-Path $root 'keep/sha256') | Should -BeTrue
            Remove-Item (Join-Path $root 'keep') -Recurse -Force
            Assert-Staged (Join-Path $root 'disk.qcow2')
            @(Get-ChildItem $ProcessDir -Force) | Should -BeNullOrEmpty
            @(Get-ChildItem $Location -Force) | Should -BeNullOrEmpty
        }
    }

    Context 'progress' {
        It 'pipeline input gets an overall bar that counts the images, without a percentage, with each image under it' {
            $folder = Split-Path (New-Target)
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript({
                    param($ModulePath, $Items)
                    Import-Module $ModulePath
                    $ProgressPreference = 'Continue'
                    $Items | Install-DiskImageFromOras
                }).AddArgument($ModulePath).AddArgument(@(
                    [pscustomobject]@{ Name = 'one'; Url = "${Repo}:latest"; Path = (Join-Path $folder 'one.qcow2') }
                    [pscustomobject]@{ Name = 'two'; Url = "${Repo}:other"; Path = (Join-Path $folder 'two.qcow2') }
                ))
                $async = $ps.BeginInvoke()
                $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(120)) | Should -BeTrue -Because 'the install is bounded'
                $results = @($ps.EndInvoke($async))
                $ps.Streams.Error | Should -BeNullOrEmpty
                $results.Name | Should -Be @('one', 'two')

                $progress = @($ps.Streams.Progress)
                $overall = @($progress | Where-Object ActivityId -EQ 1)
                @($overall | Where-Object RecordType -EQ 'Processing').StatusDescription | Should -Be @('Image 1: one', 'Image 2: two')
                @($overall | Where-Object RecordType -EQ 'Processing').PercentComplete | Should -Be @(-1, -1)
                $overall[-1].RecordType | Should -Be 'Completed'
                $images = @($progress | Where-Object ActivityId -EQ 2)
                $images.Count | Should -BeGreaterThan 0
                $images.ParentActivityId | Sort-Object -Unique | Should -Be 1
            }
            finally {
                $ps.Dispose()
            }
        }

        It 'a single image given as arguments shows no overall bar' {
            $target = New-Target
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript({
                    param($ModulePath, $Reference, $Target)
                    Import-Module $ModulePath
                    Install-DiskImageFromOras $Reference -Path $Target
                }).AddArgument($ModulePath).AddArgument("${Repo}:latest").AddArgument($target)
                $async = $ps.BeginInvoke()
                $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(120)) | Should -BeTrue -Because 'the install is bounded'
                @($ps.EndInvoke($async)).Count | Should -Be 1
                @($ps.Streams.Progress | Where-Object ActivityId -EQ 1) | Should -BeNullOrEmpty
                @($ps.Streams.Progress | Where-Object ActivityId -EQ 2).ParentActivityId | Sort-Object -Unique | Should -Be -1
            }
            finally {
                $ps.Dispose()
            }
        }
    }

    Context 'bad input' {
        It 'refuses <Case> with <Id> and leaves nothing behind' -TestCases @(
            @{ Case = 'a malformed reference'; Reference = 'oras://127.0.0.1:1/UPPER/Case:tag'; Id = 'ReferenceInvalid' }
            @{ Case = 'a reference with neither tag nor digest'; Reference = 'oras://127.0.0.1:1/lab/debian'; Id = 'ReferenceInvalid' }
            @{ Case = 'an unknown tag'; Reference = 'unknown'; Id = 'ManifestNotFound' }
            @{ Case = 'a Helm artifact'; Reference = 'helm'; Id = 'NoImageLayer' }
        ) {
            if ($Reference -eq 'unknown') { $Reference = "${Repo}:does-not-exist" }
            if ($Reference -eq 'helm') {
                $null = Publish-TestImage -Registry $Registry -Repository 'lab/chart' -Tag '1.0.0' -Helm
                $Reference = "oras://$($Registry.proxy)/lab/chart:1.0.0"
            }
            $target = New-Target
            $err = $null
            Install-DiskImageFromOras $Reference -Path $target -ErrorVariable err -ErrorAction SilentlyContinue -RetryIntervalSec 0 | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -Be "$Id,OrasStaging.Commands.InstallDiskImageFromOrasCommand"
            Get-FolderNames $target | Should -BeNullOrEmpty
        }

        It 'refuses a folder that cannot be written with DestinationNotWritable' {
            $parent = Split-Path (New-Target)
            Set-Content (Join-Path $parent 'a-file') 'x'
            $err = $null
            Install-DiskImageFromOras "${Repo}:latest" -Path (Join-Path $parent 'a-file/sub/disk.qcow2') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DestinationNotWritable,*'
            @(Get-ChildItem $parent -Force).Name | Should -Be @('a-file')
        }

        It 'refuses a -ConfigPath that is <Case> with <Id> (<Category>) and a recommended action' -TestCases @(
            @{ Case = 'a folder'; Id = 'InvalidArgument'; Category = 'InvalidArgument' }
            @{ Case = 'missing'; Id = 'PathNotFound'; Category = 'ObjectNotFound' }
            @{ Case = 'held exclusively by another handle'; Id = 'ConfigInvalid'; Category = 'InvalidData' }
            @{ Case = 'malformed TOML'; Id = 'ConfigInvalid'; Category = 'InvalidData' }
        ) {
            $folder = Split-Path (New-Target)
            $config = Join-Path $folder 'cijoe.toml'
            $lock = $null
            switch ($Case) {
                'a folder' { $config = $folder }
                'missing' { }
                'held exclusively by another handle' {
                    Set-Content $config "[system-imaging.images.a]`noras.url = `"${Repo}:latest`"`ndisk.path = `"$folder/a.qcow2`"`n"
                    $lock = [IO.FileStream]::new($config, 'Open', 'ReadWrite', 'None')
                }
                'malformed TOML' { Set-Content $config "[system-imaging.images.a`noras.url = " }
            }
            $record = $null
            try {
                Install-DiskImageFromOras -ConfigPath $config -ErrorAction Stop
            }
            catch {
                $record = $_
            }
            finally {
                if ($lock) { $lock.Dispose() }
            }
            $record | Should -Not -BeNullOrEmpty
            $record.FullyQualifiedErrorId | Should -Be "$Id,OrasStaging.Commands.InstallDiskImageFromOrasCommand"
            $record.CategoryInfo.Category | Should -Be $Category
            $record.ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
            @(Get-ChildItem $folder -Force -Exclude 'cijoe.toml').Count | Should -Be 0
        }

        It 'refuses a -KeepBlob folder that cannot be created with DestinationNotWritable' {
            $target = New-Target
            $parent = Split-Path $target
            Set-Content (Join-Path $parent 'a-file') 'x'
            $err = $null
            Install-DiskImageFromOras "${Repo}:latest" -Path $target -KeepBlob (Join-Path $parent 'a-file') -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -Be 'DestinationNotWritable,OrasStaging.Commands.InstallDiskImageFromOrasCommand'
            $err[0].ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
            @(Get-ChildItem $parent -Force).Name | Should -Be @('a-file')
        }

        It 'refuses -GrowBy with -Size before any request' {
            $target = New-Target
            Reset-ProxyStats -Registry $Registry
            $err = $null
            Install-DiskImageFromOras "${Repo}:latest" -Path $target -GrowBy 1GB -Size 10GB -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
            (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
            Get-FolderNames $target | Should -BeNullOrEmpty
        }

        It 'refuses a format it cannot stream before any request' {
            $target = New-Target 'disk.vmdk'
            Reset-ProxyStats -Registry $Registry
            $err = $null
            Install-DiskImageFromOras "${Repo}:latest" -Path $target -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'UnsupportedFormat,*'
            (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
            Get-FolderNames $target | Should -BeNullOrEmpty
        }
    }
}

Describe 'Install-DiskImageFromOras with authentication' {
    It 'follows the redirect to the CDN without sending it the <Mode> credential' -ForEach @(@{ Mode = 'token' }, @{ Mode = 'basic' }) {
        $authRegistry = Start-TestRegistry -Auth $Mode
        try {
            # The private repository refuses anonymous pulls, so a credential certainly exists and is used.
            $published = Publish-TestImage -Registry $authRegistry -Repository $authRegistry.privateRepository -ImagePath $Raw
            $credential = [pscredential]::new($authRegistry.username, (ConvertTo-SecureString $authRegistry.password -AsPlainText -Force))
            Set-ProxyFault -Registry $authRegistry -Kind Redirect -RejectAuthorization | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "oras://$($authRegistry.proxy)/$($authRegistry.privateRepository):latest" -Path $target -Credential $credential -CacheServer ''
            Assert-Staged $target $published
            $stats = Get-ProxyStats -Registry $authRegistry
            @($stats.requests | Where-Object { $_.kind -eq 'Blob' -and $_.authorization -and $_.status -eq 307 }).Count |
                Should -BeGreaterThan 0 -Because 'the registry was asked for the blob with the credential'
            $stats.cdnRequests | Should -BeGreaterThan 0
            $stats.cdnRequestsWithAuthorization | Should -Be 0
            @($stats.cdnLog | Where-Object { $_.status -ge 300 }).Count | Should -Be 0 -Because 'the CDN answers 400 to a request with Authorization'
        }
        finally {
            Stop-TestRegistry $authRegistry
        }
    }

    It 'survives token expiry mid-stream on a bearer-token registry' {
        $tokenRegistry = Start-TestRegistry -Auth token
        try {
            $published = Publish-TestImage -Registry $tokenRegistry -Repository 'lab/debian' -Tag 'latest' -ImagePath $Raw
            Set-ProxyFault -Registry $tokenRegistry -Kind Unauthorized -AfterBytes 300000 -Times 1 -PathContains $published.digest | Out-Null
            $target = New-Target
            $null = Install-DiskImageFromOras "oras://$($tokenRegistry.proxy)/lab/debian:latest" -Path $target -RetryIntervalSec 0
            Assert-Staged $target $published
            $stats = Get-ProxyStats -Registry $tokenRegistry
            $stats.faultsFired.unauthorized | Should -BeGreaterOrEqual 1
            $stats.tokenRequestsGranted | Should -BeGreaterOrEqual 2
        }
        finally {
            Stop-TestRegistry $tokenRegistry
        }
    }

    It 'refuses wrong credentials with AuthenticationFailed and leaves nothing behind' {
        $basic = Start-TestRegistry -Auth basic
        try {
            $null = Publish-TestImage -Registry $basic -Repository 'lab/debian' -Tag 'latest' -ImagePath $Raw
            $wrong = [pscredential]::new('nobody', (ConvertTo-SecureString 'wrong' -AsPlainText -Force))
            $target = New-Target
            $err = $null
            Install-DiskImageFromOras "oras://$($basic.proxy)/lab/debian:latest" -Path $target -Credential $wrong -ErrorVariable err -ErrorAction SilentlyContinue -RetryIntervalSec 0
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
            Get-FolderNames $target | Should -BeNullOrEmpty

            $right = [pscredential]::new($basic.username, (ConvertTo-SecureString $basic.password -AsPlainText -Force))
            $null = Install-DiskImageFromOras "oras://$($basic.proxy)/lab/debian:latest" -Path $target -Credential $right
            Assert-Identical $target
        }
        finally {
            Stop-TestRegistry $basic
        }
    }
}
