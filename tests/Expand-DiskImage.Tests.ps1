#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Add-Type -Path $env:ORASSTAGING_TESTKIT

    function New-RawImage([string] $Path, [long] $Size = 5MB + 100, [int] $Seed = 1) {
        [OrasStaging.TestKit.DiskImageGenerator]::WriteFile($Path, $Size, $Seed, 'Realistic', 0.33)
    }

    function Invoke-Tool([string] $Tool, [string] $Source, [string] $Target) {
        # The CLIs write to stdout; a native redirection keeps the bytes intact in pwsh 7.4+.
        & $Tool -c $Source > $Target
        if ($LASTEXITCODE -ne 0) { throw "$Tool failed" }
    }

    function Get-Listing([string] $Folder) {
        @(Get-ChildItem -LiteralPath $Folder -Force | ForEach-Object Name | Sort-Object)
    }
}

Describe 'Expand-DiskImage' {
    BeforeEach {
        $script:Dir = Join-Path $TestDrive ([guid]::NewGuid().ToString('N').Substring(0, 8))
        $null = New-Item -ItemType Directory $Dir
        $script:Raw = Join-Path $Dir 'disk.raw'
        New-RawImage $Raw
        Invoke-Tool gzip $Raw (Join-Path $Dir 'disk.img.gz')
        Push-Location $Dir
    }

    AfterEach {
        Pop-Location
    }

    It 'expands a path relative to the PowerShell location, beside the input, without the extension' {
        $item = Expand-DiskImage disk.img.gz
        $item | Should -BeOfType [System.IO.FileInfo]
        $item.FullName | Should -Be (Join-Path $Dir 'disk.img')
        (Get-FileHash $item.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash
    }

    It 'takes -LiteralPath with [ and ] and a FileInfo from the pipeline' {
        Copy-Item -LiteralPath disk.img.gz -Destination (Join-Path $Dir 'img[1].raw.gz')
        $item = Expand-DiskImage -LiteralPath 'img[1].raw.gz'
        $item.Name | Should -Be 'img[1].raw'
        Remove-Item -LiteralPath $item.FullName

        $piped = Get-Item -LiteralPath 'img[1].raw.gz' | Expand-DiskImage
        $piped.Name | Should -Be 'img[1].raw'
        (Get-FileHash -LiteralPath $piped.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash
    }

    It 'expands every file a wildcard matches, whatever the compressor' {
        Invoke-Tool zstd $Raw (Join-Path $Dir 'a.img.zst')
        Invoke-Tool xz $Raw (Join-Path $Dir 'b.img.xz')
        Invoke-Tool bzip2 $Raw (Join-Path $Dir 'c.img.bz2')
        $items = Expand-DiskImage '?.img.*'
        $items.Name | Sort-Object | Should -Be @('a.img', 'b.img', 'c.img')
        foreach ($i in $items) { (Get-FileHash $i.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash }
    }

    It 'writes to -DestinationPath, relative or a folder' {
        $null = New-Item -ItemType Directory out
        (Expand-DiskImage disk.img.gz -DestinationPath out/x.img).FullName | Should -Be (Join-Path $Dir 'out/x.img')
        (Expand-DiskImage disk.img.gz -Destination out).FullName | Should -Be (Join-Path $Dir 'out/disk.img')
    }

    It 'writes nothing with -WhatIf' {
        $before = Get-Listing $Dir
        Expand-DiskImage disk.img.gz -WhatIf | Should -BeNullOrEmpty
        Get-Listing $Dir | Should -Be $before
    }

    It 'refuses an existing destination unless -Force' {
        Set-Content disk.img 'keep'
        Expand-DiskImage disk.img.gz -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'DestinationExists,OrasStaging.Commands.ExpandDiskImageCommand'
        Get-Content disk.img | Should -Be 'keep'

        $item = Expand-DiskImage disk.img.gz -Force
        (Get-FileHash $item.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash
    }

    It 'reports CorruptInput for a truncated file and leaves nothing behind' {
        $bytes = [IO.File]::ReadAllBytes((Join-Path $Dir 'disk.img.gz'))
        [IO.File]::WriteAllBytes((Join-Path $Dir 'cut.img.gz'), $bytes[0..($bytes.Length / 2)])
        $before = Get-Listing $Dir
        Expand-DiskImage cut.img.gz -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'CorruptInput,OrasStaging.Commands.ExpandDiskImageCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        Get-Listing $Dir | Should -Be $before
    }

    It 'reports UnsupportedFormat for an input that is not compressed' {
        Expand-DiskImage disk.raw -DestinationPath x.img -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'UnsupportedFormat,OrasStaging.Commands.ExpandDiskImageCommand'
        Test-Path x.img | Should -BeFalse
    }
}

Describe 'Expand-DiskImage refuses a corrupt stream' {
    BeforeAll {
        $script:CorruptDir = Join-Path $TestDrive 'corrupt'
        $null = New-Item -ItemType Directory $CorruptDir
        $script:CorruptRaw = Join-Path $CorruptDir 'disk.raw'
        New-RawImage $CorruptRaw -Size (2MB) -Seed 3
    }

    It 'reports CorruptInput for a <Tool> stream with flipped bytes in the middle (not truncated) and leaves nothing' -ForEach @(
        @{ Tool = 'gzip'; Extension = 'gz' }
        @{ Tool = 'zstd'; Extension = 'zst' }
        @{ Tool = 'xz'; Extension = 'xz' }
    ) {
        $good = Join-Path $CorruptDir "good.img.$Extension"
        Invoke-Tool $Tool $CorruptRaw $good
        $bytes = [IO.File]::ReadAllBytes($good)
        # Whole length kept, header and trailer intact: only the integrity checks of the format can tell.
        $middle = [int]($bytes.Length / 2)
        foreach ($i in $middle..($middle + 7)) { $bytes[$i] = $bytes[$i] -bxor 0x5A }
        $bad = Join-Path $CorruptDir "bad-$Tool.img.$Extension"
        [IO.File]::WriteAllBytes($bad, $bytes)
        # The reference CLI agrees that it is corrupt (so the fixture itself is right).
        & $Tool -t $bad 2>$null
        $LASTEXITCODE | Should -Not -Be 0
        $before = Get-Listing $CorruptDir
        Expand-DiskImage -LiteralPath $bad -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'CorruptInput,OrasStaging.Commands.ExpandDiskImageCommand'
        Get-Listing $CorruptDir | Should -Be $before
    }

    It 'Ctrl+C while a stream is expanding leaves nothing behind' {
        # A stream that takes long to decode whatever the machine: a real 2 MiB disk followed by 128 bzip2
        # streams of 64 MiB of zeros each (8 GiB decoded from a few KiB; the zeros become holes, so nothing fills
        # the disk). The cmdlet is stopped as soon as its hidden temporary file exists, long before the end.
        $folder = Join-Path $TestDrive "stop-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        $null = New-Item -ItemType Directory $folder
        $head = Join-Path $TestDrive 'stop-head.bz2'
        Invoke-Tool bzip2 $CorruptRaw $head
        $zeros = Join-Path $TestDrive 'stop-zeros.bz2'
        & sh -c "head -c 67108864 /dev/zero | bzip2 -9 > '$zeros'"
        $LASTEXITCODE | Should -Be 0
        $source = Join-Path $folder 'disk.img.bz2'
        $out = [IO.File]::Create($source)
        try {
            $bytes = [IO.File]::ReadAllBytes($head); $out.Write($bytes, 0, $bytes.Length)
            $bytes = [IO.File]::ReadAllBytes($zeros)
            foreach ($i in 1..128) { $out.Write($bytes, 0, $bytes.Length) }
        }
        finally { $out.Dispose() }

        $ps = [powershell]::Create()
        try {
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', $env:ORASSTAGING_MODULE).AddStatement()
            $null = $ps.AddCommand('Expand-DiskImage').AddParameter('LiteralPath', $source).AddParameter('DestinationPath', (Join-Path $folder 'disk.img'))
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(120)
            while (@(Get-Listing $folder).Count -lt 2 -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }

            # (Streams.Error is not read here: enumerating an open PSDataCollection waits for the pipeline to end.)
            $async.IsCompleted | Should -BeFalse -Because 'the cmdlet must still be expanding'
            @(Get-Listing $folder | Where-Object { $_ -ne 'disk.img.bz2' }) | Should -Not -BeNullOrEmpty -Because 'the cmdlet has started writing its temporary file'
            $stop = $ps.BeginStop($null, $null)
            $stop.AsyncWaitHandle.WaitOne(90000) | Should -BeTrue -Because 'Ctrl+C must end the cmdlet'
            $ps.InvocationStateInfo.State | Should -Be 'Stopped' -Because 'it was stopped mid-stream, not finished'
        }
        finally {
            $ps.Dispose()
        }
        # Stopping returns only once the work has unwound, so nothing may be left, not even for a moment after.
        Get-Listing $folder | Should -Be @('disk.img.bz2')
    }
}
