#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# The README's pipeline forms, end to end against the real loopback registry: the cmdlets compose.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("pipeline-tests-" + [guid]::NewGuid().ToString('n'))
    $null = New-Item -ItemType Directory -Path $Work
    $script:Raw = Join-Path $Work 'source.raw'
    New-TestDiskImage -Path $Raw -Size (3MB + 4096 + 100) -Seed 11 | Out-Null
    $script:OldDockerConfig = $env:DOCKER_CONFIG
    $env:DOCKER_CONFIG = Join-Path $Work 'no-docker'
    $script:R = Start-TestRegistry -Auth anonymous
    $script:P = Publish-TestImage -Registry $R -Repository lab/pipe -Tag latest -ImagePath $Raw -Compression zstd
    $script:Ref = "oras://$($R.registry)/lab/pipe:latest"
}

AfterAll {
    if ($R) { Stop-TestRegistry $R }
    $env:DOCKER_CONFIG = $OldDockerConfig
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'The cmdlets compose in a pipeline' {
    It 'Resolve-OrasImage | Save-OrasBlob | Convert-DiskImage gives a qcow2 identical to the source' {
        $blobs = Join-Path $Work 'blobs [1]'
        $null = New-Item -ItemType Directory -Path $blobs
        $qcow2 = Join-Path $Work 'pipe.qcow2'
        $out = Resolve-OrasImage $Ref | Save-OrasBlob -DestinationPath $blobs | Convert-DiskImage -DestinationPath $qcow2 -GrowBy 1MB
        $out | Should -BeOfType ([IO.FileInfo])
        $out.FullName | Should -Be $qcow2
        & qemu-img compare -f raw -F qcow2 $Raw $qcow2 | Out-Null
        $LASTEXITCODE | Should -Be 0
        & qemu-img check $qcow2 | Out-Null
        $LASTEXITCODE | Should -Be 0
        $info = & qemu-img info --output=json $qcow2 | ConvertFrom-Json
        $info.'virtual-size' | Should -Be ([math]::Ceiling((Get-Item $Raw).Length / 512) * 512 + 1MB)
    }

    It 'Save-OrasBlob | Expand-DiskImage gives the raw bytes back' {
        $folder = Join-Path $Work 'expand'
        $null = New-Item -ItemType Directory -Path $folder
        $expanded = Resolve-OrasImage $Ref | Save-OrasBlob -DestinationPath $folder | Expand-DiskImage
        $expanded.FullName | Should -Be (Join-Path $folder ($P.title -replace '\.zst$', ''))
        (Get-FileHash $expanded.FullName).Hash | Should -Be (Get-FileHash $Raw).Hash
    }

    It 'objects with Reference and Path properties pipe into Install-DiskImageFromOras' {
        $target = Join-Path $Work 'from-csv.qcow2'
        $csv = Join-Path $Work 'images.csv'
        [pscustomobject]@{ Name = 'pipe'; Reference = $Ref; Path = $target } | Export-Csv -LiteralPath $csv
        $staged = Import-Csv -LiteralPath $csv | Install-DiskImageFromOras
        $staged.Name | Should -Be 'pipe'
        $staged.Digest | Should -Be $P.digest
        (Get-Content -LiteralPath "$target.digest" -Raw) | Should -Be $P.digest
        & qemu-img compare -f raw -F qcow2 $Raw $target | Out-Null
        $LASTEXITCODE | Should -Be 0
    }
}
