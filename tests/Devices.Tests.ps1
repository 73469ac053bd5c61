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
