#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Get-StagedDiskImage over images staged by Install-DiskImageFromOras from the real loopback registry (through the
# TestKit's fault proxy, which counts the requests -CheckRemote makes), plus cijoe stamps and broken records.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-inventory-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work
    $script:OldDockerConfig = $env:DOCKER_CONFIG
    $env:DOCKER_CONFIG = Join-Path $Work 'no-docker'
    $script:OldCache = $env:WITHCACHE_SERVER
    $env:WITHCACHE_SERVER = $null

    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (3MB + 100) -Seed 21).FullName
    $script:Raw2 = (New-TestDiskImage -Path (Join-Path $Work 'source2.img') -Size 2MB -Seed 22).FullName
    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Pub = Publish-TestImage -Registry $Registry -Repository 'lab/inv' -Tag 'latest' -ImagePath $Raw
    $script:Repo = "oras://$($Registry.proxy)/lab/inv"

    # A lab folder: one image at the top, one in a subfolder, both from the same tag.
    $script:Lab = Join-Path $Work 'lab'
    $null = New-Item -ItemType Directory -Force (Join-Path $Lab 'host2')
    $script:Top = Join-Path $Lab 'a.qcow2'
    $script:Nested = Join-Path $Lab 'host2/b.qcow2'
    $null = Install-DiskImageFromOras "${Repo}:latest" -Path $Top -ErrorAction Stop
    $null = Install-DiskImageFromOras "${Repo}:latest" -Path $Nested -ErrorAction Stop

    function script:New-Folder([string] $Name) {
        $folder = Join-Path $Work $Name
        $null = New-Item -ItemType Directory -Force $folder
        $folder
    }
}

AfterAll {
    Stop-TestRegistry $Registry
    $env:DOCKER_CONFIG = $OldDockerConfig
    $env:WITHCACHE_SERVER = $OldCache
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'Get-StagedDiskImage' {
    BeforeEach {
        Clear-ProxyFault -Registry $Registry
        Reset-ProxyStats -Registry $Registry
    }

    It 'lists an image staged by Install-DiskImageFromOras with its receipt fields, and makes no request' {
        $item = Get-StagedDiskImage -Path $Top
        @($item).Count | Should -Be 1
        $item.PSObject.TypeNames[0] | Should -Be 'OrasStaging.Inventory.StagedDiskImageInfo'
        $item.Name | Should -Be 'a.qcow2'
        $item.Path | Should -Be $Top
        $item.Format | Should -Be 'qcow2'
        $item.Digest | Should -Be $Pub.digest
        $item.ManifestDigest | Should -Be $Pub.manifestDigest
        $item.Reference | Should -Match ([regex]::Escape("$($Registry.proxy)/lab/inv:latest"))
        $item.ModuleVersion | Should -Be (Import-PowerShellDataFile $env:ORASSTAGING_MODULE).ModuleVersion
        $item.StagedAt | Should -BeGreaterThan ([DateTimeOffset]::UtcNow.AddHours(-1))
        $item.HasStamp | Should -BeTrue
        $item.HasReceipt | Should -BeTrue
        $item.Problem | Should -Be 'None'
        $item.Current | Should -BeNullOrEmpty
        (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
    }

    It 'finds the same image from its stamp or receipt path, and from a relative path' {
        (Get-StagedDiskImage "$Top.digest").Path | Should -Be $Top
        (Get-StagedDiskImage "$Top.oras.json").Path | Should -Be $Top
        Push-Location $Lab
        try { (Get-StagedDiskImage a.qcow2).Path | Should -Be $Top } finally { Pop-Location }
    }

    It 'lists a folder, and its subfolders only with -Recurse' {
        @(Get-StagedDiskImage $Lab).Path | Should -Be @($Top)
        @(Get-StagedDiskImage $Lab -Recurse).Path | Sort-Object | Should -Be (@($Top, $Nested) | Sort-Object)
        Push-Location $Lab
        try { @(Get-StagedDiskImage).Path | Should -Be @($Top) } finally { Pop-Location }
    }

    It 'takes Get-ChildItem output from the pipeline' {
        @(Get-ChildItem $Lab -Filter '*.qcow2' -Recurse | Get-StagedDiskImage).Count | Should -Be 2
    }

    It 'lists a cijoe stamp alone, with the format read from the image header' {
        $folder = New-Folder 'cijoe'
        $image = Join-Path $folder 'seed.img'
        Copy-Item $Raw $image
        Set-Content -LiteralPath "$image.digest" -Value $Pub.digest -NoNewline
        $item = Get-StagedDiskImage $folder
        $item.Path | Should -Be $image
        $item.Digest | Should -Be $Pub.digest
        $item.Format | Should -Be 'raw'
        $item.Reference | Should -BeNullOrEmpty
        $item.HasReceipt | Should -BeFalse
        $item.Problem | Should -Be 'None'
    }

    It 'reports a stamp beside a file that is no disk image, and still lists the others' {
        $folder = New-Folder 'notadisk'
        $zip = Join-Path $folder 'a-seed.img'
        [IO.File]::WriteAllBytes($zip, [byte[]](0x50, 0x4B, 3, 4, 20, 0, 0, 0))
        Set-Content -LiteralPath "$zip.digest" -Value $Pub.digest -NoNewline
        $good = Join-Path $folder 'b-seed.img'
        Copy-Item $Raw $good
        Set-Content -LiteralPath "$good.digest" -Value $Pub.digest -NoNewline
        $items = @(Get-StagedDiskImage $folder -ErrorAction Stop)
        $items.Count | Should -Be 2
        $items[0].Problem | Should -Be 'NotADiskImage'
        $items[0].ProblemMessage | Should -Match 'zip'
        $items[1].Format | Should -Be 'raw'
        $items[1].Problem | Should -Be 'None'
    }

    It 'reports a stamp without an image, disagreeing records and a newer receipt instead of hiding them' {
        $folder = New-Folder 'problems'
        foreach ($f in $Top, "$Top.digest", "$Top.oras.json") { Copy-Item $f -Destination $folder }
        # gone: the stamp and receipt of an image that was deleted.
        Copy-Item "$Top.digest" (Join-Path $folder 'gone.qcow2.digest')
        Copy-Item "$Top.oras.json" (Join-Path $folder 'gone.qcow2.oras.json')
        # disagree: the stamp names another digest than the receipt.
        Copy-Item $Top (Join-Path $folder 'disagree.qcow2')
        Copy-Item "$Top.oras.json" (Join-Path $folder 'disagree.qcow2.oras.json')
        Set-Content (Join-Path $folder 'disagree.qcow2.digest') -Value ('sha256:' + '0' * 64) -NoNewline
        # newer: a receipt written by a later OrasStaging.
        Copy-Item $Top (Join-Path $folder 'newer.qcow2')
        Copy-Item "$Top.digest" (Join-Path $folder 'newer.qcow2.digest')
        $receipt = Get-Content "$Top.oras.json" -Raw | ConvertFrom-Json
        $receipt.moduleVersion = '99.0.0'
        $receipt | ConvertTo-Json -Depth 5 | Set-Content (Join-Path $folder 'newer.qcow2.oras.json')
        # unreadable: a receipt that is not JSON.
        Copy-Item $Top (Join-Path $folder 'broken.qcow2')
        Copy-Item "$Top.digest" (Join-Path $folder 'broken.qcow2.digest')
        Set-Content (Join-Path $folder 'broken.qcow2.oras.json') -Value '{ not json'

        $verbose = Get-StagedDiskImage $folder -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        $items = @(Get-StagedDiskImage $folder)
        $byName = @{}; foreach ($i in $items) { $byName[$i.Name] = $i }
        $byName['a.qcow2'].Problem | Should -Be 'None'
        $byName['gone.qcow2'].Problem | Should -Be 'MissingImage'
        $byName['disagree.qcow2'].Problem | Should -Be 'DigestDisagrees'
        $byName['disagree.qcow2'].ProblemMessage | Should -Match ([regex]::Escape($Pub.digest))
        $byName['newer.qcow2'].Problem | Should -Be 'NewerModuleVersion'
        $byName['broken.qcow2'].Problem | Should -Be 'UnreadableReceipt'
        @($verbose).Count | Should -Be 4
        ($verbose.Message -join "`n") | Should -Match 'MissingImage'
    }

    It 'fails a missing path with PathNotFound and goes on with the next' {
        $items = @(Get-StagedDiskImage (Join-Path $Work 'nowhere'), $Top -ErrorAction SilentlyContinue -ErrorVariable failure)
        $items.Path | Should -Be @($Top)
        @($failure).Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'PathNotFound,OrasStaging.Commands.GetStagedDiskImageCommand'
        { Get-StagedDiskImage (Join-Path $Work 'nowhere') -ErrorAction Stop } | Should -Throw -ErrorId 'PathNotFound,*'
    }

    It 'renders the table view with a short digest and the problem' {
        $table = Get-StagedDiskImage $Lab -Recurse | Format-Table | Out-String -Width 250
        $table | Should -Match ([regex]::Escape([OrasStaging.Units]::ShortDigest($Pub.digest)))
        $table | Should -Not -Match ([regex]::Escape($Pub.digest))
        $table | Should -Match 'b\.qcow2'
    }
}

Describe 'Get-StagedDiskImage -CheckRemote' {
    BeforeEach {
        Clear-ProxyFault -Registry $Registry
        Reset-ProxyStats -Registry $Registry
    }

    It 'sets Current from manifest requests only, resolving a tag shared by several images once' {
        $items = @(Get-StagedDiskImage $Lab -Recurse -CheckRemote -ErrorAction Stop)
        $items.Count | Should -Be 2
        foreach ($i in $items) { $i.Current | Should -BeTrue }
        $stats = Get-ProxyStats -Registry $Registry
        $stats.requestsByKind.blob | Should -Be 0
        $stats.requestsByKind.manifest | Should -BeGreaterThan 0
        @($stats.requests | Where-Object { $_.kind -eq 'manifest' -and $_.method -eq 'GET' }).Count | Should -Be 1 -Because 'one reference, resolved once'
    }

    It 'says Current = $false once the tag has moved, and $true for the image staged from the new tag' {
        $folder = New-Folder 'moved'
        $old = Join-Path $folder 'old.qcow2'
        # Publish a tag, stage it, then move the tag to another image.
        $null = Publish-TestImage -Registry $Registry -Repository 'lab/inv' -Tag 'moving' -ImagePath $Raw
        $null = Install-DiskImageFromOras "${Repo}:moving" -Path $old -ErrorAction Stop
        (Get-StagedDiskImage $old -CheckRemote -ErrorAction Stop).Current | Should -BeTrue
        $moved = Publish-TestImage -Registry $Registry -Repository 'lab/inv' -Tag 'moving' -ImagePath $Raw2
        $item = Get-StagedDiskImage $old -CheckRemote -ErrorAction Stop
        $item.Current | Should -BeFalse
        $item.Digest | Should -Be $Pub.digest
        $moved.digest | Should -Not -Be $Pub.digest
        ($item | Format-Table | Out-String -Width 250) | Should -Match '\bNo\b'
    }

    It 'writes an error against the image and leaves Current empty when the reference no longer resolves' {
        $folder = New-Folder 'orphan'
        $image = Join-Path $folder 'orphan.qcow2'
        Copy-Item $Top $image
        Copy-Item "$Top.digest" "$image.digest"
        $receipt = Get-Content "$Top.oras.json" -Raw | ConvertFrom-Json
        $receipt.reference = "oras://$($Registry.proxy)/lab/never-pushed:latest"
        $receipt | ConvertTo-Json -Depth 5 | Set-Content "$image.oras.json"
        $item = Get-StagedDiskImage $folder -CheckRemote -ErrorAction SilentlyContinue -ErrorVariable failure
        $item.Path | Should -Be $image
        $item.Current | Should -BeNullOrEmpty
        @($failure).Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'ManifestNotFound,*'
        $failure[0].TargetObject | Should -Be $image
    }

    It 'leaves a cijoe stamp alone unchecked, without an error' {
        $folder = Join-Path $Work 'cijoe'
        $items = @(Get-StagedDiskImage $folder -CheckRemote -ErrorAction Stop)
        $items.Count | Should -BeGreaterThan 0
        $items[0].Current | Should -BeNullOrEmpty
        (Get-ProxyStats -Registry $Registry).totalRequests | Should -Be 0
    }
}
