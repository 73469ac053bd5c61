#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Add-Type -Path $env:ORASSTAGING_TESTKIT
    $script:QemuImg = (Get-Command qemu-img -ErrorAction Stop).Source

    function Invoke-Tool([string] $Tool, [string] $Source, [string] $Target) {
        & $Tool -c $Source > $Target
        if ($LASTEXITCODE -ne 0) { throw "$Tool failed" }
    }

    function Get-Listing([string] $Folder) {
        @(Get-ChildItem -LiteralPath $Folder -Force | ForEach-Object Name | Sort-Object)
    }

    function Get-VirtualSize([string] $Path, [string] $Format) {
        (& $QemuImg info --output=json -f $Format $Path | ConvertFrom-Json).'virtual-size'
    }

    function Assert-Identical([string] $Raw, [string] $Image, [string] $Format) {
        $out = & $QemuImg compare -f raw -F $Format $Raw $Image
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
    }
}

Describe 'Convert-DiskImage' {
    BeforeEach {
        $script:Dir = Join-Path $TestDrive ([guid]::NewGuid().ToString('N').Substring(0, 8))
        $null = New-Item -ItemType Directory $Dir
        $script:Raw = Join-Path $Dir 'disk.raw'
        [OrasStaging.TestKit.DiskImageGenerator]::WriteFile($Raw, 5MB + 100, 7, 'Realistic', 0.33)
        Invoke-Tool gzip $Raw (Join-Path $Dir 'disk.img.gz')
        Push-Location $Dir
    }

    AfterEach {
        Pop-Location
    }

    It 'converts relative paths to qcow2 that checks clean and compares identical' {
        $item = Convert-DiskImage disk.img.gz disk.qcow2
        $item | Should -BeOfType [System.IO.FileInfo]
        $item.FullName | Should -Be (Join-Path $Dir 'disk.qcow2')
        & $QemuImg check -q $item.FullName
        $LASTEXITCODE | Should -Be 0
        Assert-Identical $Raw $item.FullName qcow2
        Get-VirtualSize $item.FullName qcow2 | Should -Be (5MB + 512)
    }

    It 'grows the image with -GrowBy' {
        $item = Convert-DiskImage disk.img.gz grown.qcow2 -GrowBy 8GB
        Get-VirtualSize $item.FullName qcow2 | Should -Be (5MB + 512 + 8GB)
        $item.Length | Should -BeLessThan 8MB
    }

    It 'takes -Format from the extension: .vhd is a fixed VHD, .img is raw' {
        $vhd = Convert-DiskImage disk.img.gz disk.vhd
        Get-VirtualSize $vhd.FullName vpc | Should -Be 6MB
        $vhd.Length | Should -Be (6MB + 512)
        Assert-Identical $Raw $vhd.FullName vpc

        $img = Convert-DiskImage -Path disk.img.gz -DestinationPath disk.img
        (Get-FileHash $img.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash

        $forced = Convert-DiskImage disk.img.gz forced.bin -Format Qcow2
        & $QemuImg check -q $forced.FullName
        $LASTEXITCODE | Should -Be 0
    }

    It 'writes VMDK through qemu-img' {
        $item = Convert-DiskImage disk.img.gz disk.vmdk -QemuImgPath $QemuImg
        Assert-Identical $Raw $item.FullName vmdk
    }

    It 'takes -LiteralPath with [ and ] and a FileInfo from the pipeline' {
        Copy-Item -LiteralPath disk.img.gz -Destination (Join-Path $Dir 'img[1].gz')
        $item = Convert-DiskImage -LiteralPath 'img[1].gz' -DestinationPath 'out[1].qcow2'
        $item.Name | Should -Be 'out[1].qcow2'
        $piped = Get-Item -LiteralPath 'img[1].gz' | Convert-DiskImage -DestinationPath piped.qcow2
        Assert-Identical $Raw $piped.FullName qcow2
    }

    It 'expands wildcards' {
        $item = Convert-DiskImage 'disk.img.g?' wild.qcow2
        $item.Name | Should -Be 'wild.qcow2'
    }

    It 'writes nothing with -WhatIf' {
        $before = Get-Listing $Dir
        Convert-DiskImage disk.img.gz disk.qcow2 -WhatIf | Should -BeNullOrEmpty
        Get-Listing $Dir | Should -Be $before
    }

    It 'refuses an existing destination unless -Force' {
        Set-Content disk.qcow2 'keep'
        Convert-DiskImage disk.img.gz disk.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'DestinationExists,OrasStaging.Commands.ConvertDiskImageCommand'
        Get-Content disk.qcow2 | Should -Be 'keep'
        $item = Convert-DiskImage disk.img.gz disk.qcow2 -Force
        Assert-Identical $Raw $item.FullName qcow2
    }

    It 'reports CorruptInput for a truncated file and leaves nothing behind' {
        $bytes = [IO.File]::ReadAllBytes((Join-Path $Dir 'disk.img.gz'))
        [IO.File]::WriteAllBytes((Join-Path $Dir 'cut.gz'), $bytes[0..($bytes.Length / 2)])
        $before = Get-Listing $Dir
        Convert-DiskImage cut.gz cut.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'CorruptInput,OrasStaging.Commands.ConvertDiskImageCommand'
        Get-Listing $Dir | Should -Be $before
    }

    It 'reports QemuImgNotFound when -QemuImgPath names a missing file' {
        Convert-DiskImage disk.img.gz disk.vdi -QemuImgPath ./no/qemu-img -ErrorVariable err -ErrorAction SilentlyContinue |
            Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'QemuImgNotFound,OrasStaging.Commands.ConvertDiskImageCommand'
        $err[0].ErrorDetails.RecommendedAction | Should -Match 'qemu-utils'
        Test-Path disk.vdi | Should -BeFalse
    }

    It 'reports UnsupportedFormat for lz4 input' {
        [IO.File]::WriteAllBytes((Join-Path $Dir 'x.lz4'), [byte[]](0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0xA7, 0, 0, 0, 0))
        Convert-DiskImage x.lz4 x.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'UnsupportedFormat,OrasStaging.Commands.ConvertDiskImageCommand'
    }

    It 'reports InvalidArgument for -Size below the input and for an unknown extension' {
        Convert-DiskImage disk.img.gz small.qcow2 -Size 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
        Test-Path small.qcow2 | Should -BeFalse
        Convert-DiskImage disk.img.gz disk.unknown -ErrorVariable err2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err2[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
    }

    It 'stops on Ctrl+C (PowerShell.Stop) and leaves nothing behind' {
        [OrasStaging.TestKit.DiskImageGenerator]::WriteFile((Join-Path $Dir 'big.raw'), 24MB, 9, 'Realistic', 0.33)
        # bzip2 decodes slowly enough to be caught mid-write.
        Invoke-Tool bzip2 (Join-Path $Dir 'big.raw') (Join-Path $Dir 'big.bz2')
        Remove-Item (Join-Path $Dir 'big.raw')
        $before = Get-Listing $Dir
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                param($Module, $Folder)
                Import-Module $Module
                Set-Location $Folder
                Convert-DiskImage big.bz2 big.qcow2
            }).AddArgument($env:ORASSTAGING_MODULE).AddArgument($Dir)
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while (-not (Get-ChildItem -LiteralPath $Dir -Force -Filter '.big.qcow2.*') -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 20
            }
            Get-ChildItem -LiteralPath $Dir -Force -Filter '.big.qcow2.*' | Should -Not -BeNullOrEmpty -Because 'the write should have started'
            $ps.Stop()
            $async.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally {
            $ps.Dispose()
        }
        Get-Listing $Dir | Should -Be $before
    }
}
