fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || echo Mismatching image and device
fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || exit /B 1
del /q C:\*
