#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# qcow2 inputs with qemu-img absent from PATH: Convert-DiskImage, Expand-DiskImage and Install-DiskImageFromOras
# read them natively. qemu-img is the oracle only, called by its absolute path.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $env:ORASSTAGING_MODULE -Force
    $script:QemuImg = (Get-Command qemu-img -ErrorAction Stop).Source
    $script:Zstd = (Get-Command zstd -ErrorAction Stop).Source

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-qcow2-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (6MB + 1536) -Seed 21).FullName
    # What KubeVirt containerDisks and cloud images hold: a zlib-compressed qcow2.
    $script:Qcow2 = Join-Path $Work 'disk.qcow2'
    & $QemuImg convert -c -f raw -O qcow2 $Raw $Qcow2
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert failed' }
    $script:Qcow2Zst = "$Qcow2.zst"
    & $Zstd -q -f $Qcow2 -o $Qcow2Zst
    if ($LASTEXITCODE -ne 0) { throw 'zstd failed' }

    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:PubZst = Publish-TestImage -Registry $Registry -Repository 'lab/fcos' -Tag 'zst' -ImagePath $Qcow2Zst
    $script:PubPlain = Publish-TestImage -Registry $Registry -Repository 'lab/fcos' -Tag 'plain' -ImagePath $Qcow2 -Compression none
    $script:Repo = "oras://$($Registry.registry)/lab/fcos"
    # A containerDisk's layer: a gzip-compressed tar whose disk/ member is the zlib qcow2.
    $cd = Join-Path $Work 'containerdisk'
    $null = New-Item -ItemType Directory -Force (Join-Path $cd 'disk')
    Copy-Item $Qcow2 (Join-Path $cd 'disk/fedora.qcow2')
    & tar -cf (Join-Path $Work 'containerdisk.tar') -C $cd disk
    if ($LASTEXITCODE -ne 0) { throw 'tar failed' }
    $script:PubCd = Publish-TestImage -Registry $Registry -Repository 'lab/containerdisk' -Tag 'gz' -ImagePath (Join-Path $Work 'containerdisk.tar') -Compression gzip
    $script:CdRepo = "oras://$($Registry.registry)/lab/containerdisk"

    # qemu-img must not be found: PATH keeps no folder that holds it.
    $script:SavedPath = $env:PATH
    # (/bin is /usr/bin on Debian, so every folder that holds a qemu-img goes, not only the first one found.)
    $env:PATH = (($env:PATH -split [IO.Path]::PathSeparator) | Where-Object {
            $_ -and -not (Test-Path -LiteralPath (Join-Path $_ 'qemu-img')) -and -not (Test-Path -LiteralPath (Join-Path $_ 'qemu-img.exe'))
        }) -join [IO.Path]::PathSeparator
    if (Get-Command qemu-img -ErrorAction Ignore) { throw 'qemu-img is still on PATH' }

    function script:New-Folder {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        (New-Item -ItemType Directory -Force $folder).FullName
    }

    function script:Assert-Same([string] $Image, [string] $Format, [long] $VirtualSize, [string] $Source = $Raw) {
        $info = & $QemuImg info --output=json -f $Format $Image | ConvertFrom-Json
        $info.'virtual-size' | Should -Be $VirtualSize
        $out = & $QemuImg compare -f raw -F $Format $Source $Image 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
        if ($Format -eq 'qcow2') {
            $out = & $QemuImg check -f qcow2 $Image 2>&1
            $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
        }
    }

    function script:Get-Grown([long] $Size) {
        # The source followed by zeros: what a grown image must read as.
        $grown = Join-Path (New-Folder) 'grown.raw'
        Copy-Item $Raw $grown
        $stream = [IO.File]::OpenWrite($grown)
        try { $stream.SetLength($Size) } finally { $stream.Dispose() }
        $grown
    }
}

AfterAll {
    $env:PATH = $SavedPath
    Stop-TestRegistry $Registry
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'qcow2 inputs without qemu-img' {
    It 'Convert-DiskImage: a zlib qcow2 to raw and to a fixed VHD' {
        $folder = New-Folder
        $rawOut = Convert-DiskImage $Qcow2 (Join-Path $folder 'disk.img')
        Assert-Same $rawOut.FullName raw (6MB + 1536)
        $vhd = Convert-DiskImage $Qcow2 (Join-Path $folder 'disk.vhd')
        Assert-Same $vhd.FullName vpc 7MB (Get-Grown 7MB)
        @(Get-ChildItem $folder -Force -Filter '.*').Count | Should -Be 0
    }

    It 'Convert-DiskImage: a qcow2 grown by 8 GiB in place, not rewritten' {
        $out = Convert-DiskImage $Qcow2 (Join-Path (New-Folder) 'grown.qcow2') -GrowBy 8GB -Verbose 4>&1
        $item = $out | Where-Object { $_ -is [IO.FileInfo] }
        ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n" | Should -Match 'Grew the qcow2 in place'
        Assert-Same $item.FullName qcow2 (6MB + 1536 + 8GB) (Get-Grown (6MB + 1536 + 8GB))
        # Copied as is: the compressed clusters stay compressed.
        $item.Length | Should -BeLessThan ((Get-Item $Qcow2).Length + 1MB)
    }

    It 'Expand-DiskImage: a .qcow2.zst to raw by the extension, decoded as it streams with no spool' {
        $folder = New-Folder
        $out = Expand-DiskImage $Qcow2Zst (Join-Path $folder 'disk.raw') -Verbose 4>&1
        $item = $out | Where-Object { $_ -is [IO.FileInfo] }
        Assert-Same $item.FullName raw (6MB + 1536)
        ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n" | Should -Match 'Decoded the qcow2 stream directly'
        @(Get-ChildItem $folder -Force | ForEach-Object Name) | Should -Be @('disk.raw')
    }

    It 'Install-DiskImageFromOras: a .qcow2.zst layer as qcow2 +8 GiB and as raw' {
        $target = Join-Path (New-Folder) 'fcos.qcow2'
        $r = Install-DiskImageFromOras "${Repo}:zst" -Path $target -GrowBy 8GB
        $r.Format | Should -Be 'qcow2'
        $r.VirtualSize | Should -Be (6MB + 1536 + 8GB)
        Assert-Same $target qcow2 (6MB + 1536 + 8GB) (Get-Grown (6MB + 1536 + 8GB))

        $rawTarget = Join-Path (New-Folder) 'fcos.img'
        $r = Install-DiskImageFromOras "${Repo}:zst" -Path $rawTarget -Format raw
        $r.Format | Should -Be 'raw'
        Assert-Same $rawTarget raw (6MB + 1536)
        @(Get-ChildItem (Split-Path $rawTarget) -Force -Filter '.*').Count | Should -Be 0
    }

    It 'Install-DiskImageFromOras: a containerDisk (tar.gz with a zlib qcow2 under disk/) as qcow2 +8 GiB and as raw, streamed' {
        $target = Join-Path (New-Folder) 'cd.qcow2'
        $r = Install-DiskImageFromOras "${CdRepo}:gz" -Path $target -GrowBy 8GB
        $r.VirtualSize | Should -Be (6MB + 1536 + 8GB)
        Assert-Same $target qcow2 (6MB + 1536 + 8GB) (Get-Grown (6MB + 1536 + 8GB))

        $rawTarget = Join-Path (New-Folder) 'cd.img'
        $out = Install-DiskImageFromOras "${CdRepo}:gz" -Path $rawTarget -Format raw -Verbose 4>&1
        ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n" | Should -Match 'Decoded the qcow2 stream directly'
        Assert-Same $rawTarget raw (6MB + 1536)
        @(Get-ChildItem (Split-Path $rawTarget) -Force -Filter '.*').Count | Should -Be 0
    }

    It 'Install-DiskImageFromOras: a plain qcow2 layer to raw' {
        $target = Join-Path (New-Folder) 'plain.raw'
        $r = Install-DiskImageFromOras "${Repo}:plain" -Path $target
        $r.Format | Should -Be 'raw'
        Assert-Same $target raw (6MB + 1536)
    }

    It 'refuses a qcow2 whose backing file is a host file, before writing anything' {
        $folder = New-Folder
        $secret = Join-Path $folder 'shadow'
        [IO.File]::WriteAllText($secret, 'root:$6$secret:19000:0:99999:7:::' + "`n")
        $overlay = Join-Path $folder 'overlay.qcow2'
        & $QemuImg create -q -f qcow2 -F raw -b $secret $overlay
        $LASTEXITCODE | Should -Be 0
        foreach ($name in 'out.qcow2', 'out.img') {
            $err = $null
            Convert-DiskImage $overlay (Join-Path $folder $name) -GrowBy 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -Be 'UnsupportedFormat,OrasStaging.Commands.ConvertDiskImageCommand'
            $err[0].Exception.Message | Should -Match 'backing file'
        }

        @(Get-ChildItem $folder -Force | ForEach-Object Name | Sort-Object) | Should -Be @('overlay.qcow2', 'shadow')
    }

    It 'Convert-DiskImage -Reencode: a zlib qcow2 written anew as an uncompressed qcow2 +8 GiB' {
        $folder = New-Folder
        $out = Convert-DiskImage $Qcow2Zst (Join-Path $folder 'new.qcow2') -Reencode -GrowBy 8GB -Verbose 4>&1
        $item = $out | Where-Object { $_ -is [IO.FileInfo] }
        $verbose = ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n"
        $verbose | Should -Match 'Decoded the qcow2 stream directly to qcow2'
        $verbose | Should -Not -Match 'Grew the qcow2 in place'
        Assert-Same $item.FullName qcow2 (6MB + 1536 + 8GB) (Get-Grown (6MB + 1536 + 8GB))
        # Not a copy: the compressed clusters were inflated, so the new file is larger than the input.
        $item.Length | Should -BeGreaterThan ((Get-Item $Qcow2).Length)
        @(Get-ChildItem $folder -Force | ForEach-Object Name) | Should -Be @('new.qcow2')
    }

    It 'Install-DiskImageFromOras -Reencode: a registry qcow2 (<Tag>) written anew through the reader, not byte-copied' -ForEach @(
        @{ Tag = 'plain' }, @{ Tag = 'zst' }
    ) {
        $folder = New-Folder
        $target = Join-Path $folder 'new.qcow2'
        $out = Install-DiskImageFromOras "${Repo}:$Tag" -Path $target -Reencode -GrowBy 8GB -Verbose 4>&1
        $r = $out | Where-Object { $_ -isnot [Management.Automation.VerboseRecord] }
        $verbose = ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n"
        $r.Format | Should -Be 'qcow2'
        $verbose | Should -Match 'Decoded the qcow2 stream directly to qcow2'
        $verbose | Should -Not -Match 'Grew the qcow2 in place'
        Assert-Same $target qcow2 (6MB + 1536 + 8GB) (Get-Grown (6MB + 1536 + 8GB))
        # Re-encoded: the zlib clusters were inflated, so the file is neither the input's bytes nor its size.
        (Get-Item $target).Length | Should -BeGreaterThan ((Get-Item $Qcow2).Length)
        $info = & $QemuImg info --output=json -f qcow2 $target | ConvertFrom-Json
        $info.'format-specific'.data.'compression-type' | Should -Be 'zlib'
        @(Get-ChildItem $folder -Force -Filter '.*').Count | Should -Be 0
    }

    It 'Install and Expand: a qcow2 whose data precedes its tables is spooled once beside the target, said in Verbose, and reads right' {
        $folder = New-Folder
        # After an internal snapshot, a write copies the first L2 table and cluster to the end of the file.
        # Large enough that what precedes the table passes the 16 MiB held in memory.
        $big = (New-TestDiskImage -Path (Join-Path $folder 'big.img') -Size 48MB -Seed 22 -Shape Realistic -DataFraction 0.8).FullName
        $rewritten = Join-Path $folder 'rewritten.qcow2'
        & $QemuImg convert -f raw -O qcow2 $big $rewritten
        & $QemuImg snapshot -c s $rewritten
        & (Join-Path (Split-Path $QemuImg) 'qemu-io') -c 'write -P 0x99 0 4k' $rewritten | Out-Null
        $LASTEXITCODE | Should -Be 0
        $expected = Join-Path $folder 'expected.raw'
        & $QemuImg convert -f qcow2 -O raw $rewritten $expected
        & $Zstd -q -f $rewritten -o "$rewritten.zst"
        # The publisher needs the tools PATH no longer has; the install below runs without them.
        $withoutQemu = $env:PATH
        $env:PATH = $SavedPath
        try { $null = Publish-TestImage -Registry $Registry -Repository 'lab/rewritten' -Tag 'zst' -ImagePath "$rewritten.zst" }
        finally { $env:PATH = $withoutQemu }

        $installFolder = New-Folder
        $target = Join-Path $installFolder 'disk.img'
        $out = Install-DiskImageFromOras "oras://$($Registry.registry)/lab/rewritten:zst" -Path $target -Format raw -Verbose 4>&1
        $verbose = ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n"
        @([regex]::Matches($verbose, 'spooling that part once')).Count | Should -Be 1
        $verbose | Should -Match ([regex]::Escape($installFolder))
        Assert-Same $target raw 48MB $expected
        @(Get-ChildItem $installFolder -Force -Filter '.*').Count | Should -Be 0

        $expandFolder = New-Folder
        $out = Expand-DiskImage "$rewritten.zst" (Join-Path $expandFolder 'disk.raw') -Verbose 4>&1
        $verbose = ($out | Where-Object { $_ -is [Management.Automation.VerboseRecord] }).Message -join "`n"
        @([regex]::Matches($verbose, 'spooling that part once')).Count | Should -Be 1
        Assert-Same (Join-Path $expandFolder 'disk.raw') raw 48MB $expected
        @(Get-ChildItem $expandFolder -Force | ForEach-Object Name) | Should -Be @('disk.raw')
    }

    It 'a damaged qcow2 is CorruptInput and leaves nothing behind: <Case>' -ForEach @(
        @{ Case = 'L1 table past the end'; Offset = 40; Value = [byte[]](0, 0, 1, 0, 0, 0, 0, 0); Compress = $false; Format = 'img' }
        @{ Case = 'L1 table past the end, streamed'; Offset = 40; Value = [byte[]](0, 0, 1, 0, 0, 0, 0, 0); Compress = $true; Format = 'img' }
        @{ Case = 'L1 entry into the header, grown'; Offset = -1; Value = [byte[]](0x80, 0, 0, 0, 0, 0, 0, 0); Compress = $false; Format = 'qcow2' }
        @{ Case = 'truncated, streamed to VHD'; Offset = -2; Value = $null; Compress = $true; Format = 'vhd' }
    ) {
        $folder = New-Folder
        $bytes = [IO.File]::ReadAllBytes($Qcow2)
        if ($Offset -eq -2) {
            $bytes = $bytes[0..([int]($bytes.Length / 2))]
        } else {
            if ($Offset -eq -1) {
                # The first L1 entry: the L1 offset is the big-endian 64-bit field at byte 40.
                $Offset = [int][BitConverter]::ToUInt64([byte[]]($bytes[47..40]), 0)
            }
            [Array]::Copy($Value, 0, $bytes, $Offset, $Value.Length)
        }

        $damaged = Join-Path $folder 'damaged.qcow2'
        [IO.File]::WriteAllBytes($damaged, $bytes)
        if ($Compress) {
            & $Zstd -q --rm $damaged -o "$damaged.zst"
            $damaged = "$damaged.zst"
        }

        $err = $null
        Convert-DiskImage $damaged (Join-Path $folder "out.$Format") -GrowBy 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'CorruptInput,OrasStaging.Commands.ConvertDiskImageCommand'
        @(Get-ChildItem $folder -Force | ForEach-Object Name) | Should -Be @(Split-Path $damaged -Leaf)
    }

    It 'refuses -GrowBy beyond what qcow2 addresses, before reading the input' {
        $err = $null
        Convert-DiskImage $Qcow2 (Join-Path (New-Folder) 'huge.qcow2') -GrowBy ([long]::MaxValue) -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
    }
}
