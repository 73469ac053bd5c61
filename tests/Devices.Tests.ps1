#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# Writing onto block devices (issue 13), on loop devices over files filled with 0xFF: a byte the image did not
# write reads back as 0xFF, so "zeros were written" and "bytes beyond the image were left alone" are both visible.
# Needs root and a kernel that gives loop devices; skipped with that reason otherwise.

BeforeDiscovery {
    $script:NoLoop = $null
    if (-not $IsLinux) { $script:NoLoop = 'loop devices are a Linux test fixture' }
    elseif ((& id -u) -ne '0') { $script:NoLoop = 'creating loop devices needs root' }
    else {
        $probe = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-loopprobe-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
        try {
            [IO.File]::WriteAllBytes($probe, [byte[]]::new(65536))
            $dev = & losetup -f --show $probe 2>&1
            if ($LASTEXITCODE -ne 0) { $script:NoLoop = "losetup cannot create a loop device: $dev" }
            else { & losetup -d $dev }
        }
        catch { $script:NoLoop = "losetup is not usable: $_" }
        finally { Remove-Item -LiteralPath $probe -ErrorAction Ignore }
    }
}

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $ModulePath -Force

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-devices-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work

    # Realistic layout (long zero runs), a size that is not a multiple of 64 KiB.
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (3MB + 4608) -Seed 21).FullName
    $script:RawBytes = [IO.File]::ReadAllBytes($Raw)
    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:PubGz = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'gz' -ImagePath $Raw -Compression gzip
    $script:PubZst = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'zst' -ImagePath $Raw -Compression zstd
    $script:RefGz = "oras://$($Registry.proxy)/lab/flash:gz"
    $script:RefZst = "oras://$($Registry.proxy)/lab/flash:zst"

    # A qcow2 inside an artifact (compressed by the publisher), decoded natively and written as raw.
    $script:Qcow2 = Join-Path $Work 'source.qcow2'
    & qemu-img convert -f raw -O qcow2 $Raw $Qcow2
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert failed' }
    $script:PubQcow2 = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'qcow2' -ImagePath $Qcow2 -Compression zstd
    $script:RefQcow2 = "oras://$($Registry.proxy)/lab/flash:qcow2"
    # Without the org.nosi.image.size annotation: the image's size is learnt only while writing it.
    $script:PubNoSize = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'nosize' -ImagePath $Raw -Compression gzip -NoSizeAnnotation
    $script:RefNoSize = "oras://$($Registry.proxy)/lab/flash:nosize"
    $script:Gz = "$Raw.gz"
    & gzip -k -f $Raw
    if ($LASTEXITCODE -ne 0) { throw 'gzip failed' }

    # Larger than one 4 MiB write buffer, for a 6 MiB device: a check that comes too late has written bytes.
    $script:Big = (New-TestDiskImage -Path (Join-Path $Work 'big.img') -Size (9MB + 4608) -Seed 22).FullName
    $script:RefBigGz = "oras://$($Registry.proxy)/lab/flash:big-gz"
    $null = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'big-gz' -ImagePath $Big -Compression gzip -NoSizeAnnotation
    $script:RefBigRaw = "oras://$($Registry.proxy)/lab/flash:big-raw"
    $script:PubBigRaw = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'big-raw' -ImagePath $Big -Compression none -NoSizeAnnotation
    $script:BigQcow2 = Join-Path $Work 'big.qcow2'
    & qemu-img convert -f raw -O qcow2 $Big $BigQcow2
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert failed' }
    $script:RefBigQcow2 = "oras://$($Registry.proxy)/lab/flash:big-qcow2"
    $null = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'big-qcow2' -ImagePath $BigQcow2 -Compression zstd -NoSizeAnnotation
    # Metadata that lies: the image decodes to far more than the 1 MiB the artifact declares.
    $script:RefLying = "oras://$($Registry.proxy)/lab/flash:lying"
    $null = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'lying' -ImagePath $Big -Compression gzip -DeclaredSize 1MB

    # A fixed VHD in an artifact: its data is the raw image, its 512-byte footer must not reach the device.
    $script:FixedVhd = Join-Path $Work 'source.vhd'
    & qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on $Raw $FixedVhd
    if ($LASTEXITCODE -ne 0) { throw 'qemu-img convert to a fixed VHD failed' }
    $null = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'vhd' -ImagePath $FixedVhd -Compression gzip
    $script:RefVhd = "oras://$($Registry.proxy)/lab/flash:vhd"

    # Formats that only qemu-img reads: refused onto a device.
    $script:Foreign = @{}
    foreach ($f in @(
            @{ Name = 'vmdk'; Args = @('-O', 'vmdk') }
            @{ Name = 'vhdx'; Args = @('-O', 'vhdx') }
            @{ Name = 'vdi'; Args = @('-O', 'vdi') }
            @{ Name = 'vhd-dynamic'; Args = @('-O', 'vpc', '-o', 'subformat=dynamic') })) {
        $out = Join-Path $Work "source.$($f.Name)"
        & qemu-img convert -f raw @($f.Args) $Raw $out
        if ($LASTEXITCODE -ne 0) { throw "qemu-img convert to $($f.Name) failed" }
        $Foreign[$f.Name] = $out
    }
    $script:RefVmdk = "oras://$($Registry.proxy)/lab/flash:vmdk"
    $null = Publish-TestImage -Registry $Registry -Repository 'lab/flash' -Tag 'vmdk' -ImagePath $Foreign['vmdk'] -Compression gzip


    # A loop device over a new file of $Size bytes of 0xFF; the body gets the device path; always detached.
    function script:Use-LoopDevice([long] $Size, [scriptblock] $Body) {
        $backing = Join-Path $Work ("loop-" + [guid]::NewGuid().ToString('n').Substring(0, 8) + '.img')
        $ff = [byte[]]::new($Size); [Array]::Fill($ff, [byte]0xFF)
        [IO.File]::WriteAllBytes($backing, $ff)
        $device = (& losetup -f --show $backing).Trim()
        if ($LASTEXITCODE -ne 0 -or -not $device) { throw "losetup failed for $backing" }
        try { & $Body $device $backing }
        finally {
            & losetup -d $device
            Remove-Item -LiteralPath $backing -ErrorAction Ignore
        }
    }

    function script:Get-DevNames([string] $Device) {
        # What sits beside the node in /dev with its name as a prefix (loop0, loop0p1, loop0.digest, …).
        $leaf = Split-Path $Device -Leaf
        @(Get-ChildItem -LiteralPath (Split-Path $Device) -Force -Filter "$leaf*" | ForEach-Object Name | Sort-Object)
    }

    function script:Read-Device([string] $Device) {
        # Through the block device itself, not the backing file: what a later reader of the disk sees.
        $stream = [IO.File]::OpenRead($Device)
        try {
            $ms = [IO.MemoryStream]::new()
            $stream.CopyTo($ms)
            , $ms.ToArray()
        }
        finally { $stream.Dispose() }
    }

    # Byte comparisons by hash: a PowerShell pipeline over megabytes of bytes takes minutes.
    function script:Get-RangeHash([byte[]] $Bytes, [long] $Offset, [long] $Count) {
        $sha = [Security.Cryptography.SHA256]::Create()
        try { [Convert]::ToHexString($sha.ComputeHash($Bytes, [int]$Offset, [int]$Count)) } finally { $sha.Dispose() }
    }

    function script:Get-FFHash([long] $Count, [byte] $Value = 0xFF) {
        $b = [byte[]]::new($Count); [Array]::Fill($b, $Value)
        Get-RangeHash $b 0 $Count
    }

    function script:Assert-Untouched([string] $Device, [string[]] $NamesBefore) {
        (& stat -L -c '%F' $Device) | Should -Be 'block special file' -Because 'the node must never be renamed over'
        Get-DevNames $Device | Should -Be $NamesBefore -Because 'no stamp, receipt, lock or partial may be created in /dev'
        $bytes = Read-Device $Device
        Get-RangeHash $bytes 0 $bytes.Length | Should -Be (Get-FFHash $bytes.Length) -Because 'nothing may be written onto a refused device'
    }

    function script:Invoke-Child([string] $Command) {
        Invoke-ChildPwsh -Command $Command
    }

    # The device holds the image, zeros where the image has zeros (the device was 0xFF), and 0xFF after it.
    function script:Assert-Flashed([string] $Device) {
        $bytes = Read-Device $Device
        $n = $RawBytes.Length
        Get-RangeHash $bytes 0 $n | Should -Be (Get-RangeHash $RawBytes 0 $n) -Because 'the first bytes of the device are the raw image'
        Get-RangeHash $bytes $ZeroAt 65536 | Should -Be (Get-FFHash 65536 0) -Because 'a zero region of the image reads back as zeros, not 0xFF'
        Get-RangeHash $bytes $n ($bytes.Length - $n) | Should -Be (Get-FFHash ($bytes.Length - $n)) -Because 'bytes beyond the image are left as they were'
        (& stat -L -c '%F' $Device) | Should -Be 'block special file'
    }

    function script:Get-DeviceHash([string] $Device) {
        $bytes = Read-Device $Device
        Get-RangeHash $bytes 0 $bytes.Length
    }

    # A 64 KiB-aligned stretch of the raw image that is all zeros, and one that holds data.
    $script:ZeroAt = -1
    $zeroHash = Get-FFHash 65536 0
    for ($at = 65536; $at + 65536 -le $RawBytes.Length; $at += 65536) {
        if ((Get-RangeHash $RawBytes $at 65536) -eq $zeroHash) { $script:ZeroAt = $at; break }
    }
    if ($ZeroAt -lt 0) { throw 'the test image has no 64 KiB zero run' }
}

AfterAll {
    if ($Registry) { Stop-TestRegistry $Registry }
    if ($Work) { Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction Ignore }
}

Describe 'Targets that are not regular files are never renamed over' {
    It 'a FIFO given as -Path stays a FIFO, with nothing created beside it' {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory $folder
        $fifo = Join-Path $folder 'disk.img'
        & mkfifo $fifo
        Install-DiskImageFromOras $RefGz -Path $fifo -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        "$($err[0])" | Should -BeLike '*FIFO*'
        (& stat -c '%F' $fifo) | Should -Be 'fifo'
        @(Get-ChildItem -LiteralPath $folder -Force | ForEach-Object Name) | Should -Be @('disk.img')
    }

    It 'Convert-DiskImage to a FIFO stays a FIFO, with nothing created beside it' {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory $folder
        $fifo = Join-Path $folder 'out.img'
        & mkfifo $fifo
        Convert-DiskImage $Raw -DestinationPath $fifo -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        (& stat -c '%F' $fifo) | Should -Be 'fifo'
        @(Get-ChildItem -LiteralPath $folder -Force | ForEach-Object Name) | Should -Be @('out.img')
    }

    It 'a loop device refused by a non-interactive run stays a block device, unwritten, nothing beside it in /dev' -Skip:([bool]$NoLoop) {
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Invoke-Child "Import-Module '$ModulePath'; Install-DiskImageFromOras '$RefGz' -Path '$device' -ErrorAction Stop"
            $r.ExitCode | Should -Not -Be 0
            Assert-Untouched $device $before
        }
    }

    It 'Convert-DiskImage onto a loop device refused by a non-interactive run leaves it a block device, unwritten' -Skip:([bool]$NoLoop) {
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Invoke-Child "Import-Module '$ModulePath'; Convert-DiskImage '$Raw' -DestinationPath '$device' -Format raw -ErrorAction Stop"
            $r.ExitCode | Should -Not -Be 0
            Assert-Untouched $device $before
        }
    }
}

Describe 'Flashing an artifact onto a block device' -Skip:([bool]$NoLoop) {
    It 'a <Kind> artifact is written raw onto a larger loop device: image, zeros, then the old 0xFF' -ForEach @(
        @{ Kind = 'gzip'; Ref = 'RefGz' }
        @{ Kind = 'zstd'; Ref = 'RefZst' }
        @{ Kind = 'qcow2 (zstd-compressed)'; Ref = 'RefQcow2' }
        @{ Kind = 'fixed VHD (gzip-compressed)'; Ref = 'RefVhd' }
    ) {
        $reference = Get-Variable -Name $Ref -ValueOnly
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Install-DiskImageFromOras $reference -Path $device -Force -Verify
            $r | Should -BeOfType ([OrasStaging.StagedImage])
            $r.Path | Should -Be $device
            $r.Format | Should -Be 'raw'
            $r.Skipped | Should -BeFalse
            $r.FileSize | Should -Be $RawBytes.Length
            Assert-Flashed $device
            Get-DevNames $device | Should -Be $before -Because 'no stamp, receipt, lock or partial is created in /dev'
        }
    }

    It 'a second run writes again: there is no skip by digest on a device' {
        Use-LoopDevice (8MB) {
            param($device)
            $null = Install-DiskImageFromOras $RefGz -Path $device -Confirm:$false
            $r = Install-DiskImageFromOras $RefGz -Path $device -Confirm:$false
            $r.Skipped | Should -BeFalse
            Assert-Flashed $device
        }
    }

    It 'the connection cut twice mid-stream resumes in place with Range: the device is identical' {
        Use-LoopDevice (8MB) {
            param($device)
            Clear-ProxyFault -Registry $Registry
            Reset-ProxyStats -Registry $Registry
            $null = Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 200000 -Times 2 -PathContains $PubGz.digest
            try {
                $r = Install-DiskImageFromOras $RefGz -Path $device -Force -ConnectionLimit 1 -RetryIntervalSec 0
            }
            finally {
                $faults = Get-ProxyFault -Registry $Registry
                $stats = Get-ProxyStats -Registry $Registry
                Clear-ProxyFault -Registry $Registry
            }
            $r.Format | Should -Be 'raw'
            @($faults)[0].fired | Should -Be 2 -Because 'both cuts happened'
            @($stats.rangeHeaders).Count | Should -BeGreaterOrEqual 2 -Because 'each resume asks for the rest with Range'
            Assert-Flashed $device
        }
    }

    It 'a digest mismatch found at the end is DigestMismatch, saying the device holds unverified data not to be booted' {
        Use-LoopDevice (16MB) {
            param($device)
            Clear-ProxyFault -Registry $Registry
            # Uncompressed: the flipped byte decodes, so the whole image reaches the device before the digest check.
            $null = Set-ProxyFault -Registry $Registry -Kind Corrupt -Offset 5000 -Times 10 -PathContains $PubBigRaw.digest
            try {
                Install-DiskImageFromOras $RefBigRaw -Path $device -Force -RetryIntervalSec 0 -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            }
            finally { Clear-ProxyFault -Registry $Registry }
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'
            "$($err[0])" | Should -BeLike "*$device now holds unverified data and must not be booted*"
            (& stat -L -c '%F' $device) | Should -Be 'block special file'
        }
    }

    It 'Convert-DiskImage writes a local <Kind> onto a loop device as raw' -ForEach @(
        @{ Kind = 'gzip file'; Source = 'Gz' }
        @{ Kind = 'qcow2 file'; Source = 'Qcow2' }
    ) {
        $file = Get-Variable -Name $Source -ValueOnly
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Convert-DiskImage $file -DestinationPath $device -Force -Verify
            $r.Path | Should -Be $device
            $r.Format | Should -Be 'raw'
            Assert-Flashed $device
            Get-DevNames $device | Should -Be $before
        }
    }
}

Describe 'Refusals before anything is written onto a device' -Skip:([bool]$NoLoop) {
    It 'a mounted loop device is refused (DestinationNotWritable), its file system untouched' {
        Use-LoopDevice (16MB) {
            param($device)
            & mkfs.ext4 -q -F -L flashmnt -E lazy_itable_init=0,lazy_journal_init=0 $device 2>&1 | Out-Null
            $LASTEXITCODE | Should -Be 0
            $mnt = Join-Path $Work ('mnt-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
            $null = New-Item -ItemType Directory $mnt
            & mount $device $mnt
            $LASTEXITCODE | Should -Be 0
            try {
                $hash = Get-DeviceHash $device
                Install-DiskImageFromOras $RefGz -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
                $err[0].FullyQualifiedErrorId | Should -BeLike 'DestinationNotWritable,*'
                "$($err[0])" | Should -BeLike "*mounted on '$mnt'*"
                Convert-DiskImage $Gz -DestinationPath $device -Force -ErrorAction SilentlyContinue -ErrorVariable err2 | Should -BeNullOrEmpty
                $err2[0].FullyQualifiedErrorId | Should -BeLike 'DestinationNotWritable,*'
                Get-DeviceHash $device | Should -Be $hash -Because 'nothing was written (compared while still mounted: unmounting writes the superblock)'
            }
            finally {
                & umount $mnt
                Remove-Item -LiteralPath $mnt -Force -ErrorAction Ignore
            }
            (& blkid -p -o value -s LABEL $device) | Should -Be 'flashmnt' -Because 'the file system is still there'
        }
    }

    It 'an image declared larger than the device is refused (InsufficientSpace) before the prompt, with nothing written' {
        Use-LoopDevice (2MB) {
            param($device)
            $before = Get-DevNames $device
            # Non-interactive and without -Force: a refusal made before the prompt is not ConfirmationRequired.
            $r = Invoke-Child "Import-Module '$ModulePath'; foreach (`$c in { Install-DiskImageFromOras '$RefGz' -Path '$device' -ErrorAction Stop }, { Convert-DiskImage '$Raw' -DestinationPath '$device' -ErrorAction Stop }, { Convert-DiskImage '$Qcow2' -DestinationPath '$device' -ErrorAction Stop }) { try { & `$c } catch { `$_.FullyQualifiedErrorId; `"`$_`" } }"
            $lines = @($r.Out -split "`r?`n" | Where-Object { $_ })
            $lines[0] | Should -BeLike 'InsufficientSpace,*' -Because 'the declared size (org.nosi.image.size) is compared before the prompt'
            $lines[1] | Should -BeLike '*larger than*Nothing was written*'
            $lines[2] | Should -BeLike 'InsufficientSpace,*' -Because "a local raw file's length is its size"
            $lines[4] | Should -BeLike 'InsufficientSpace,*' -Because "a local qcow2's virtual size is in its header"
            Assert-Untouched $device $before
        }
    }

    It 'an undeclared image too large for the device, still in the first buffer, is refused with nothing written' {
        Use-LoopDevice (2MB) {
            param($device)
            $before = Get-DevNames $device
            Install-DiskImageFromOras $RefNoSize -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InsufficientSpace,*'
            "$($err[0])" | Should -BeLike "*larger than $device*Nothing was written to $device*"
            Assert-Untouched $device $before
        }
    }

    It 'an undeclared image that passes the end of the device stops there and says the device holds a partial image' {
        Use-LoopDevice (6MB) {
            param($device)
            $before = Get-DevNames $device
            Install-DiskImageFromOras $RefBigGz -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InsufficientSpace,*'
            "$($err[0])" | Should -BeLike "*image is larger than $device*nothing past the end was written*$device now holds a partial image and must not be booted*"
            Get-DevNames $device | Should -Be $before
            $bytes = Read-Device $device
            $bytes.Length | Should -Be 6MB -Because 'no write goes past the end of the device'
            Get-RangeHash $bytes 0 65536 | Should -Be (Get-RangeHash ([IO.File]::ReadAllBytes($Big)) 0 65536) -Because 'the start of the image was written: the message is about a real partial image'
        }
    }

    It 'an undeclared <Kind> too large for the device is refused before the first byte' -ForEach @(
        @{ Kind = 'uncompressed raw layer (its length is its size)'; Ref = 'RefBigRaw' }
        @{ Kind = 'qcow2 in an artifact (its header gives the virtual size)'; Ref = 'RefBigQcow2' }
    ) {
        $reference = Get-Variable -Name $Ref -ValueOnly
        Use-LoopDevice (6MB) {
            param($device)
            $before = Get-DevNames $device
            Install-DiskImageFromOras $reference -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InsufficientSpace,*'
            "$($err[0])" | Should -BeLike '*larger than*Nothing was written*'
            Assert-Untouched $device $before
        }
    }

    It 'a stream that decodes past the size its artifact declares is CorruptInput, with nothing written' {
        Use-LoopDevice (16MB) {
            param($device)
            $before = Get-DevNames $device
            Install-DiskImageFromOras $RefLying -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'CorruptInput,*'
            "$($err[0])" | Should -BeLike '*more than*declares*Nothing was written*'
            Assert-Untouched $device $before
        }
    }

    It 'a local <Name> is refused before the prompt (UnsupportedFormat: convert it to raw first)' -ForEach @(
        @{ Name = 'vmdk' }, @{ Name = 'vhdx' }, @{ Name = 'vdi' }, @{ Name = 'vhd-dynamic' }
    ) {
        $file = $Foreign[$Name]
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Invoke-Child "Import-Module '$ModulePath'; try { Convert-DiskImage '$file' -DestinationPath '$device' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `"`$_`"; `$_.ErrorDetails.RecommendedAction }"
            $lines = @($r.Out -split "`r?`n" | Where-Object { $_ })
            $lines[0] | Should -BeLike 'UnsupportedFormat,*' -Because $r.Err
            $lines[1] | Should -BeLike "*not written onto a block device*Nothing was written to $device*"
            $lines[2] | Should -BeLike '*Convert it to a raw file first*'
            Assert-Untouched $device $before
        }
    }

    It 'a VMDK in an artifact is refused (UnsupportedFormat: convert it to raw first), with nothing written' {
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            Install-DiskImageFromOras $RefVmdk -Path $device -Force -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'UnsupportedFormat,*'
            "$($err[0])" | Should -BeLike "*Vmdk*Nothing was written to $device*"
            $err[0].ErrorDetails.RecommendedAction | Should -BeLike '*Convert it to a raw file first*'
            Assert-Untouched $device $before
        }
    }

    It 'a caller without permission on the device gets DestinationNotWritable (root or the disk group) before the prompt, nothing written' {
        if (-not (Get-Command setpriv -ErrorAction Ignore)) { Set-ItResult -Skipped -Because 'setpriv (util-linux) is needed to run a child as nobody'; return }
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            # The child runs as nobody with no groups. CAP_DAC_READ_SEARCH lets it read the module, pwsh and the
            # test files wherever they are (root's home included); it grants no write, so the device stays closed to it.
            $nobodyHome = Join-Path $Work ('nobody-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
            $null = New-Item -ItemType Directory $nobodyHome
            & chmod 0777 $nobodyHome
            $script = Join-Path $nobodyHome 'child.ps1'
            Set-Content -LiteralPath $script -Value @"
Import-Module '$ModulePath'
foreach (`$c in { Install-DiskImageFromOras '$RefGz' -Path '$device' -ErrorAction Stop }, { Convert-DiskImage '$Gz' -DestinationPath '$device' -ErrorAction Stop }, { Convert-DiskImage '$Gz' -DestinationPath '$device' -Force -ErrorAction Stop }) {
    try { & `$c; 'WROTE' } catch { `$_.FullyQualifiedErrorId; "`$_" }
}
"@
            $pwsh = @([Environment]::ProcessPath)
            if ((Split-Path ([Environment]::ProcessPath) -Leaf) -match '^dotnet') { $pwsh += [Environment]::GetCommandLineArgs()[0] }
            $oldHome = $env:HOME
            $env:HOME = $nobodyHome
            try {
                $out = & setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search `
                    @pwsh -NoProfile -NonInteractive -File $script 2>&1
            }
            finally { $env:HOME = $oldHome }
            $lines = @($out | ForEach-Object { "$_" } | Where-Object { $_ })
            $lines[0] | Should -BeLike 'DestinationNotWritable,*' -Because "refused before the prompt, not ConfirmationRequired: $($lines -join ' | ')"
            $lines[1] | Should -BeLike "*Permission denied*$device*root*'disk'*Nothing was written*"
            $lines[2] | Should -BeLike 'DestinationNotWritable,*'
            $lines[4] | Should -BeLike 'DestinationNotWritable,*' -Because '-Force skips the prompt, not the permission'
            $lines | Should -Not -Contain 'WROTE'
            Assert-Untouched $device $before
        }
    }

    It 'a regular file where a device could be is handled as a file (stamp and receipt beside it)' {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory $folder
        $file = Join-Path $folder 'loop.img'
        $ff = [byte[]]::new(8MB); [Array]::Fill($ff, [byte]0xFF); [IO.File]::WriteAllBytes($file, $ff)
        $r = Install-DiskImageFromOras $RefGz -Path $file -Force
        $r.Path | Should -Be $file
        (& stat -c '%F' $file) | Should -Be 'regular file'
        (Get-Item $file).Length | Should -Be $RawBytes.Length -Because 'a file is replaced by the image, not written into'
        Test-Path "$file.digest" | Should -BeTrue
        Test-Path "$file.oras.json" | Should -BeTrue
    }

    It '-WhatIf names the device, its size, model and file system, and writes nothing' {
        Use-LoopDevice (16MB) {
            param($device, $backing)
            & mkfs.ext4 -q -F -L flashlbl $device 2>&1 | Out-Null
            $hash = Get-DeviceHash $device
            $before = Get-DevNames $device
            $r = Invoke-Child "Import-Module '$ModulePath'; Install-DiskImageFromOras '$RefGz' -Path '$device' -WhatIf; Convert-DiskImage '$Gz' -DestinationPath '$device' -WhatIf"
            $r.ExitCode | Should -Be 0 -Because $r.Err
            $r.Out | Should -BeLike "*What if: Write *$device (16.0 MiB, loop: $backing)*(ext4 'flashlbl')*"
            $r.Out | Should -BeLike "*What if: Write '$Gz'*onto $device*"
            Get-DeviceHash $device | Should -Be $hash
            Get-DevNames $device | Should -Be $before
        }
    }

    It 'a non-interactive run without -Force or -Confirm:$false writes nothing and says why (ConfirmationRequired)' {
        Use-LoopDevice (8MB) {
            param($device)
            $before = Get-DevNames $device
            $r = Invoke-Child "Import-Module '$ModulePath'; try { Install-DiskImageFromOras '$RefGz' -Path '$device' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `"`$_`" }; try { Convert-DiskImage '$Gz' -DestinationPath '$device' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId }"
            $lines = @($r.Out -split "`r?`n" | Where-Object { $_ })
            $lines[0] | Should -Be 'ConfirmationRequired,OrasStaging.Commands.InstallDiskImageFromOrasCommand'
            $lines[1] | Should -BeLike "*$device needs confirmation*Nothing was written*"
            $lines[2] | Should -Be 'ConfirmationRequired,OrasStaging.Commands.ConvertDiskImageCommand'
            Assert-Untouched $device $before
        }
    }
}

Describe '-Verify reads the device back' -Skip:([bool]$NoLoop) {
    It 'catches a byte changed on the device between the write and the read-back (DigestMismatch, not to be booted)' {
        Use-LoopDevice (8MB) {
            param($device, $backing)
            # Test-only seam (Devices/DeviceTestSeam.cs): the flash waits at $gate.go after its flush.
            $gate = Join-Path $Work ('gate-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
            $env:ORASSTAGING_TEST_VERIFY_GATE = $gate
            try {
                $job = Start-ThreadJob -ScriptBlock {
                    param($ModulePath, $Ref, $Device)
                    Import-Module $ModulePath
                    Install-DiskImageFromOras $Ref -Path $Device -Force -Verify -ErrorAction SilentlyContinue -ErrorVariable e
                    , @($e)
                } -ArgumentList $ModulePath, $RefGz, $device
                $deadline = [DateTime]::UtcNow.AddSeconds(120)
                while (-not (Test-Path "$gate.ready") -and [DateTime]::UtcNow -lt $deadline -and $job.State -in 'NotStarted', 'Running') { Start-Sleep -Milliseconds 50 }
                if (-not (Test-Path "$gate.ready")) {
                    $out = $job | Wait-Job -Timeout 10 | Receive-Job -Keep 2>&1
                    throw "The flash did not reach the read-back: $($out | Out-String) $($job.Error | Out-String)"
                }
                # Another writer changes one byte of the image through the loop device's backing file.
                $fs = [IO.File]::Open($backing, 'Open', 'ReadWrite', 'ReadWrite')
                try { $fs.Position = 1000; $b = $fs.ReadByte(); $fs.Position = 1000; $fs.WriteByte($b -bxor 0x5A); $fs.Flush() } finally { $fs.Dispose() }
                $null = New-Item -ItemType File "$gate.go"
                $errors = $job | Wait-Job -Timeout 120 | Receive-Job
                $job | Remove-Job -Force
            }
            finally { Remove-Item Env:ORASSTAGING_TEST_VERIFY_GATE -ErrorAction Ignore }
            $errors[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'
            "$($errors[0])" | Should -BeLike "*$device*must not be booted*"
        }
    }
}
